//! TLS: termination with SNI and ALPN, client certificates into the plugin
//! context, certificate hot reload, https and HTTP/2 upstreams. Every
//! certificate is generated per test (see `pki.rs`).

use crate::pki::{
    client_config, https_get, server_certificate, server_config, write_atomically, Ca, Leaf,
};
use crate::support::{GatewayOptions, TestGateway};
use bytes::Bytes;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

/// YAML for a TLS listener offering these (cert, key) files.
fn tls_listener(certificates: &[(std::path::PathBuf, std::path::PathBuf)], extra: &str) -> String {
    let mut yaml = String::from("    tls:\n      certificates:\n");
    for (cert, key) in certificates {
        yaml.push_str(&format!(
            "        - {{ cert: '{}', key: '{}' }}\n",
            cert.display(),
            key.display()
        ));
    }
    yaml.push_str(extra);
    yaml
}

const PLAIN_ROUTE: &str = "routes:\n  - name: r\n    upstream: a\n";

/// A gateway serving `routes` on the TLS `listener` (see [`tls_listener`]).
async fn tls_gateway(routes: &str, listener: &str) -> TestGateway {
    let options = GatewayOptions {
        listener,
        ..GatewayOptions::default()
    };
    TestGateway::start_opts(routes, options).await
}

#[tokio::test(flavor = "multi_thread")]
async fn sni_picks_the_certificate_and_alpn_picks_h2_or_http1() {
    let certs = tempfile::tempdir().unwrap();
    let ca = Ca::new("test ca");
    let default = ca.server(&["gateway.test", "127.0.0.1"]);
    let api = ca.server(&["*.api.test"]);
    let listener = tls_listener(
        &[
            default.write(certs.path(), "default"),
            api.write(certs.path(), "api"),
        ],
        "",
    );
    let gw = tls_gateway(PLAIN_ROUTE, &listener).await;

    let h2 = https_get(
        gw.addr,
        "v1.api.test",
        client_config(&ca, &["h2", "http/1.1"], None),
        "/sni",
    )
    .await
    .unwrap();
    assert_eq!(h2.server_cert, api.der, "SNI v1.api.test gets *.api.test");
    assert_eq!(h2.alpn.as_deref(), Some("h2"));
    assert_eq!(h2.version, http::Version::HTTP_2);
    assert_eq!(h2.reply.status, 200);
    assert_eq!(h2.reply.json()["path"], "/sni");
    assert_eq!(
        h2.reply.upstream_header("x-forwarded-proto").as_deref(),
        Some("https")
    );

    let http1 = https_get(
        gw.addr,
        "gateway.test",
        client_config(&ca, &["http/1.1"], None),
        "/",
    )
    .await
    .unwrap();
    assert_eq!(http1.server_cert, default.der);
    assert_eq!(http1.alpn.as_deref(), Some("http/1.1"));
    assert_eq!(http1.version, http::Version::HTTP_11);
    assert_eq!(http1.reply.status, 200);

    // An IP address sends no SNI: the first certificate is the default.
    let no_sni = server_certificate(gw.addr, "127.0.0.1", client_config(&ca, &[], None))
        .await
        .unwrap();
    assert_eq!(no_sni, default.der);

    // Plain HTTP on a TLS listener is not served.
    let plain = crate::support::get_client()
        .send("GET", &gw.url("/"), &[], b"")
        .await;
    assert!(
        !matches!(&plain, Ok(reply) if reply.status < 400),
        "plain HTTP must not be served: {plain:?}"
    );
}

/// A gateway whose TLS listener asks for client certificates from `clients`;
/// the route copies the client identity from the context into headers.
async fn mtls_gateway(certs: &Path, server_ca: &Ca, clients: &Ca, required: bool) -> TestGateway {
    let ca_file = write_atomically(certs, "clients-ca.pem", clients.pem().as_bytes());
    let listener = tls_listener(
        &[server_ca.server(&["gateway.test"]).write(certs, "server")],
        &format!(
            "      client_auth: {{ ca: '{}', required: {required} }}\n",
            ca_file.display()
        ),
    );
    tls_gateway("routes:\n  - name: r\n    upstream: a\n    plugins:\n      - name: transform\n        config:\n          missing: skip\n          request:\n            headers:\n              set:\n                x-client-cn: \"${ctx.tls.client.cn}\"\n                x-client-subject: \"${ctx.tls.client.subject}\"\n                x-client-san: \"${ctx.tls.client.san}\"\n", &listener).await
}

#[tokio::test(flavor = "multi_thread")]
async fn mtls_requires_a_client_certificate_and_hands_its_identity_to_plugins() {
    let certs = tempfile::tempdir().unwrap();
    let (server_ca, clients, strangers) = (Ca::new("server ca"), Ca::new("clients"), Ca::new("x"));
    let gw = mtls_gateway(certs.path(), &server_ca, &clients, true).await;

    let alice = clients.client("alice");
    let reply = https_get(
        gw.addr,
        "gateway.test",
        client_config(&server_ca, &["http/1.1"], Some(&alice)),
        "/",
    )
    .await
    .unwrap()
    .reply;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.upstream_header("x-client-cn").as_deref(),
        Some("alice")
    );
    let subject = reply.upstream_header("x-client-subject").unwrap();
    assert!(
        subject.contains("CN=alice") && subject.contains("O=Acme"),
        "{subject}"
    );
    assert_eq!(
        reply.upstream_header("x-client-san").as_deref(),
        Some("URI:spiffe://test/alice")
    );

    for (who, identity) in [
        ("no certificate", None),
        (
            "a certificate from another CA",
            Some(strangers.client("mallory")),
        ),
    ] {
        let refused = https_get(
            gw.addr,
            "gateway.test",
            client_config(&server_ca, &["http/1.1"], identity.as_ref()),
            "/",
        )
        .await;
        assert!(refused.is_err(), "{who} must be refused: {refused:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn optional_client_auth_serves_anonymous_clients_without_an_identity() {
    let certs = tempfile::tempdir().unwrap();
    let (server_ca, clients) = (Ca::new("server ca"), Ca::new("clients"));
    let gw = mtls_gateway(certs.path(), &server_ca, &clients, false).await;

    let anonymous = https_get(
        gw.addr,
        "gateway.test",
        client_config(&server_ca, &["h2"], None),
        "/",
    )
    .await
    .unwrap()
    .reply;
    assert_eq!(anonymous.status, 200);
    assert_eq!(anonymous.upstream_header("x-client-cn"), None);

    let bob = https_get(
        gw.addr,
        "gateway.test",
        client_config(&server_ca, &["h2"], Some(&clients.client("bob"))),
        "/",
    )
    .await
    .unwrap()
    .reply;
    assert_eq!(bob.upstream_header("x-client-cn").as_deref(), Some("bob"));
}

#[tokio::test(flavor = "multi_thread")]
async fn certificate_files_reload_and_a_bad_one_keeps_the_previous_serving() {
    let certs = tempfile::tempdir().unwrap();
    let ca = Ca::new("test ca");
    let v1 = ca.server(&["gateway.test"]);
    let (cert_file, key_file) = v1.write(certs.path(), "gw");
    let listener = tls_listener(&[(cert_file.clone(), key_file)], "");
    let gw = tls_gateway(PLAIN_ROUTE, &listener).await;
    let presented = || server_certificate(gw.addr, "gateway.test", client_config(&ca, &[], None));
    assert_eq!(presented().await.unwrap(), v1.der);

    // A renewed certificate for the same key is served to new connections.
    let v2 = ca.server_with_key(&["gateway.test", "www.gateway.test"], v1.key_pair());
    write_atomically(certs.path(), "gw.pem", v2.cert_pem.as_bytes());
    let event = gw.next_reload_event(0).await;
    assert!(event.ok, "{}", event.message);
    assert_eq!(presented().await.unwrap(), v2.der);

    // Garbage, then a certificate that does not fit the key: both refused
    // with the file and the reason; v2 keeps serving.
    write_atomically(certs.path(), "gw.pem", b"not a certificate");
    let event = gw.next_reload_event(1).await;
    assert!(!event.ok);
    assert!(
        event.message.contains(&cert_file.display().to_string())
            && event.message.contains("no PEM certificate"),
        "{}",
        event.message
    );
    let other_key: Leaf = ca.server(&["gateway.test"]);
    write_atomically(certs.path(), "gw.pem", other_key.cert_pem.as_bytes());
    let event = gw.next_reload_event(2).await;
    assert!(!event.ok);
    assert!(
        event.message.contains("gw.key") && event.message.contains("not usable with"),
        "{}",
        event.message
    );
    assert_eq!(presented().await.unwrap(), v2.der);
}

/// A test upstream (TLS when `tls` is given, h2c or HTTP/1.1 otherwise)
/// answering with the SNI and HTTP version it saw.
async fn reporting_upstream(tls: Option<Arc<rustls::ServerConfig>>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    Some(config) => {
                        let Ok(stream) = tokio_rustls::TlsAcceptor::from(config).accept(tcp).await
                        else {
                            return;
                        };
                        let sni = stream.get_ref().1.server_name().map(str::to_string);
                        serve_report(TokioIo::new(stream), sni).await
                    }
                    None => serve_report(TokioIo::new(tcp), None).await,
                }
            });
        }
    });
    addr
}

async fn serve_report<I>(io: I, sni: Option<String>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
        let body = serde_json::json!({
            "sni": sni,
            "version": format!("{:?}", request.version()),
            "path": request.uri().path(),
        });
        async move {
            Ok::<_, Infallible>(http::Response::new(http_body_util::Full::new(Bytes::from(
                body.to_string(),
            ))))
        }
    });
    let _ = auto::Builder::new(TokioExecutor::new())
        .serve_connection(io, service)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn https_and_h2_upstreams_with_a_configured_ca_and_server_name() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, stranger) = (Ca::new("backend ca"), Ca::new("stranger"));
    let ca_file = write_atomically(certs.path(), "ca.pem", ca.pem().as_bytes());
    let stranger_file = write_atomically(certs.path(), "stranger.pem", stranger.pem().as_bytes());
    let secure = reporting_upstream(Some(server_config(&ca.server(&["backend.internal"])))).await;
    let plain = reporting_upstream(None).await;
    let (ca_file, stranger_file) = (ca_file.display(), stranger_file.display());
    let upstreams = format!(
        "  secure: {{ targets: ['{secure}'], tls: {{ ca: '{ca_file}', server_name: backend.internal }} }}\n\
         \x20 secure_h2: {{ targets: ['{secure}'], protocol: h2, tls: {{ ca: '{ca_file}', server_name: backend.internal }} }}\n\
         \x20 h2c: {{ targets: ['{plain}'], protocol: h2 }}\n\
         \x20 untrusted: {{ targets: ['{secure}'], tls: {{ ca: '{stranger_file}', server_name: backend.internal }} }}\n\
         \x20 wrong_name: {{ targets: ['{secure}'], tls: {{ ca: '{ca_file}', server_name: other.internal }} }}\n\
         \x20 web_roots: {{ targets: ['{secure}'], tls: {{ server_name: backend.internal }} }}\n"
    );
    let mut routes = String::from("routes:\n");
    for name in [
        "secure",
        "secure_h2",
        "h2c",
        "untrusted",
        "wrong_name",
        "web_roots",
    ] {
        routes.push_str(&format!(
            "  - name: {name}\n    match: {{ path_prefix: /{name} }}\n    upstream: {name}\n"
        ));
    }
    let gw = TestGateway::start_opts(
        &routes,
        GatewayOptions {
            upstreams: &upstreams,
            ..GatewayOptions::default()
        },
    )
    .await;
    let client = crate::support::get_client();

    let reply = client.get(&gw.url("/secure"), &[]).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.json()["sni"], "backend.internal");
    assert_eq!(reply.json()["version"], "HTTP/1.1");

    let reply = client.get(&gw.url("/secure_h2"), &[]).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.json()["version"], "HTTP/2.0", "h2 negotiated by ALPN");

    let reply = client.get(&gw.url("/h2c"), &[]).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(
        reply.json()["version"],
        "HTTP/2.0",
        "h2c with prior knowledge"
    );

    for refused in ["/untrusted", "/wrong_name", "/web_roots"] {
        let reply = client.get(&gw.url(refused), &[]).await;
        assert_eq!(reply.status, 502, "{refused}: {:?}", reply.body);
        assert_eq!(reply.json()["code"], "upstream_unreachable");
    }
}
