//! Certificates made per test with rcgen (no private key is checked in),
//! written as PEM files, and a TLS client that speaks HTTP/1.1 or h2 as
//! ALPN decides.

use crate::support::Reply;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A certificate authority that issues server and client certificates.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// An issued certificate and its key.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        Ca {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for DNS names and/or IP addresses, with a new key.
    pub fn server(&self, names: &[&str]) -> Leaf {
        self.server_with_key(names, KeyPair::generate().unwrap())
    }

    /// A server certificate for `names` with the given key (to rotate a
    /// certificate but keep its key).
    pub fn server_with_key(&self, names: &[&str], key: KeyPair) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, "server");
        self.issue(params, key)
    }

    /// A client certificate with common name `cn`, organisation `Acme` and
    /// the URI SAN `spiffe://test/<cn>`.
    pub fn client(&self, cn: &str) -> Leaf {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Acme");
        params.subject_alt_names.push(SanType::URI(
            format!("spiffe://test/{cn}").try_into().unwrap(),
        ));
        self.issue(params, KeyPair::generate().unwrap())
    }

    fn issue(&self, params: CertificateParams, key: KeyPair) -> Leaf {
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }
}

impl Leaf {
    /// Writes `<name>.pem` and `<name>.key` into `dir`, each written aside
    /// and renamed into place; returns both paths.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = write_atomically(dir, &format!("{name}.pem"), self.cert_pem.as_bytes());
        let key = write_atomically(dir, &format!("{name}.key"), self.key_pem.as_bytes());
        (cert, key)
    }

    pub fn key_pair(&self) -> KeyPair {
        KeyPair::from_pem(&self.key_pem).unwrap()
    }
}

/// Writes a file aside and renames it into place, as a deploy tool would.
pub fn write_atomically(dir: &Path, name: &str, contents: &[u8]) -> PathBuf {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    path
}

/// A client config trusting `ca`, offering `alpn`, presenting `identity` if given.
pub fn client_config(ca: &Ca, alpn: &[&str], identity: Option<&Leaf>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.issuer.der().clone()).unwrap();
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
    let mut config = match identity {
        Some(leaf) => builder
            .with_client_auth_cert(
                vec![leaf.der.clone()],
                PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Arc::new(config)
}

/// What one request over a fresh TLS connection saw.
#[derive(Debug)]
pub struct TlsReply {
    pub reply: Reply,
    pub alpn: Option<String>,
    pub server_cert: CertificateDer<'static>,
    pub version: http::Version,
}

/// Connects to `addr` with SNI `server_name` (none for an IP address) and
/// returns the certificate the server presented.
pub async fn server_certificate(
    addr: SocketAddr,
    server_name: &str,
    config: Arc<ClientConfig>,
) -> Result<CertificateDer<'static>, String> {
    let tls = connect(addr, server_name, config).await?;
    Ok(tls.get_ref().1.peer_certificates().unwrap()[0].clone())
}

async fn connect(
    addr: SocketAddr,
    server_name: &str,
    config: Arc<ClientConfig>,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from(server_name.to_string()).unwrap();
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))
}

/// Sends one GET over a new TLS connection, in the HTTP version ALPN chose.
pub async fn https_get(
    addr: SocketAddr,
    server_name: &str,
    config: Arc<ClientConfig>,
    path: &str,
) -> Result<TlsReply, String> {
    let tls = connect(addr, server_name, config).await?;
    let (_, session) = tls.get_ref();
    let alpn = session
        .alpn_protocol()
        .map(|p| String::from_utf8_lossy(p).into_owned());
    let server_cert = session.peer_certificates().unwrap()[0].clone();
    let request = http::Request::get(format!("https://{server_name}{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let io = TokioIo::new(tls);
    let response = if alpn.as_deref() == Some("h2") {
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        sender.send_request(request).await
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let mut request = request;
        let host = http::HeaderValue::from_str(server_name).unwrap();
        request.headers_mut().insert(http::header::HOST, host);
        *request.uri_mut() = path.parse().unwrap();
        sender.send_request(request).await
    }
    .map_err(|e| e.to_string())?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(TlsReply {
        reply: Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        },
        alpn,
        server_cert,
        version: parts.version,
    })
}

/// A rustls server config for a test upstream: `leaf` offered with ALPN h2 and http/1.1.
pub fn server_config(leaf: &Leaf) -> Arc<rustls::ServerConfig> {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der.clone()],
        PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap(),
    )
    .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}
