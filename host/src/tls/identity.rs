//! Names inside X.509 certificates: the DNS names a server certificate is
//! chosen by (SNI), and the identity of a verified client certificate that
//! plugins read from the request context.

use crate::plugin::RequestContext;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Context key of the verified client certificate's subject, e.g. `CN=alice, O=Acme`.
pub const SUBJECT_KEY: &str = "tls.client.subject";
/// Context key of the subject's common name.
pub const COMMON_NAME_KEY: &str = "tls.client.cn";
/// Context key of the subject alternative names, e.g. `DNS:a.example,URI:spiffe://x`.
pub const SAN_KEY: &str = "tls.client.san";

/// Who a verified client certificate says the client is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    pub subject: String,
    pub common_name: Option<String>,
    /// `TYPE:value` entries: `DNS`, `email`, `URI`, `IP`.
    pub alt_names: Vec<String>,
}

impl ClientIdentity {
    /// The identity in a DER certificate; `None` if it does not parse
    /// (the handshake's verifier already accepted it, so that is unexpected).
    pub fn from_der(der: &[u8]) -> Option<ClientIdentity> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let subject = cert.subject();
        let alt_names = general_names(&cert)
            .into_iter()
            .filter_map(alt_name)
            .collect();
        let common_name = subject
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string);
        let identity = ClientIdentity {
            subject: subject.to_string(),
            common_name,
            alt_names,
        };
        Some(identity)
    }

    /// Writes the identity into a request context (keys `tls.client.*`).
    pub fn seed(&self, context: &mut RequestContext) {
        context.insert(SUBJECT_KEY.into(), self.subject.clone());
        if let Some(cn) = &self.common_name {
            context.insert(COMMON_NAME_KEY.into(), cn.clone());
        }
        if !self.alt_names.is_empty() {
            context.insert(SAN_KEY.into(), self.alt_names.join(","));
        }
    }
}

/// The certificate's subject alternative names; none without the extension.
fn general_names<'a>(cert: &'a X509Certificate<'a>) -> Vec<&'a GeneralName<'a>> {
    cert.subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| san.value.general_names.iter().collect())
        .unwrap_or_default()
}

fn alt_name(name: &GeneralName<'_>) -> Option<String> {
    match name {
        GeneralName::DNSName(dns) => Some(format!("DNS:{dns}")),
        GeneralName::RFC822Name(email) => Some(format!("email:{email}")),
        GeneralName::URI(uri) => Some(format!("URI:{uri}")),
        GeneralName::IPAddress(bytes) => ip(bytes).map(|ip| format!("IP:{ip}")),
        _ => None,
    }
}

fn ip(bytes: &[u8]) -> Option<std::net::IpAddr> {
    match bytes.len() {
        4 => Some(<[u8; 4]>::try_from(bytes).ok()?.into()),
        16 => Some(<[u8; 16]>::try_from(bytes).ok()?.into()),
        _ => None,
    }
}

/// The lower-case DNS names a server certificate is valid for: its DNS
/// subject alternative names, or its common name when it has none.
pub fn server_names(der: &[u8]) -> Result<Vec<String>, String> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let sans: Vec<String> = general_names(&cert)
        .into_iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(dns) => Some(dns.to_ascii_lowercase()),
            _ => None,
        })
        .collect();
    if !sans.is_empty() {
        return Ok(sans);
    }
    let common_names = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .map(str::to_ascii_lowercase)
        .collect();
    Ok(common_names)
}

/// Whether a certificate name (`api.example.com` or `*.example.com`, lower
/// case) covers a requested server name; a wildcard covers one label.
pub fn name_matches(pattern: &str, server_name: &str) -> bool {
    let server_name = server_name.to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(suffix) => server_name
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        None => pattern == server_name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_exactly_one_label() {
        assert!(name_matches("*.example.com", "api.example.com"));
        assert!(name_matches("*.example.com", "API.Example.com"));
        assert!(!name_matches("*.example.com", "example.com"));
        assert!(!name_matches("*.example.com", "a.b.example.com"));
        assert!(name_matches("example.com", "example.com"));
        assert!(!name_matches("example.com", "www.example.com"));
    }

    #[test]
    fn client_identity_has_subject_cn_and_alt_names() {
        let mut params = rcgen::CertificateParams::new(vec!["alice.example".into()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "alice");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Acme");
        params.subject_alt_names.push(rcgen::SanType::URI(
            "spiffe://acme/alice".try_into().unwrap(),
        ));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let identity = ClientIdentity::from_der(cert.der()).unwrap();
        assert_eq!(identity.common_name.as_deref(), Some("alice"));
        assert!(
            identity.subject.contains("CN=alice"),
            "{}",
            identity.subject
        );
        assert!(identity.subject.contains("O=Acme"), "{}", identity.subject);
        assert_eq!(
            identity.alt_names,
            ["DNS:alice.example", "URI:spiffe://acme/alice"]
        );
        let mut context = RequestContext::new();
        identity.seed(&mut context);
        assert_eq!(context[COMMON_NAME_KEY], "alice");
        assert_eq!(
            context[SAN_KEY],
            "DNS:alice.example,URI:spiffe://acme/alice"
        );
    }

    #[test]
    fn server_names_come_from_dns_alt_names() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["a.test".into(), "*.b.test".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        assert_eq!(server_names(cert.der()).unwrap(), ["a.test", "*.b.test"]);
    }
}
