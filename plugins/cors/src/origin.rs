//! Allowed-origin patterns: `*`, an exact origin, or every subdomain of a
//! domain, parsed once at load and matched against the `Origin` header.

/// One entry of `origins`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginPattern {
    /// `*`: any origin.
    Any,
    /// `https://app.example.com[:port]`, compared case-insensitively.
    Exact(String),
    /// `[scheme://]*.example.com[:port]`: any subdomain (one label or more),
    /// not the domain itself; without a scheme, `http` or `https`.
    Subdomains {
        scheme: Option<String>,
        /// `.example.com` or `.example.com:8443`, lower-case.
        suffix: String,
    },
}

impl OriginPattern {
    /// Parses a config entry; `None` when it is not one of the three forms.
    pub fn parse(text: &str) -> Option<OriginPattern> {
        let text = text.trim().to_ascii_lowercase();
        if text == "*" {
            return Some(OriginPattern::Any);
        }
        let (scheme, authority) = match text.split_once("://") {
            Some((scheme, authority)) => (Some(scheme.to_string()), authority),
            None => (None, text.as_str()),
        };
        if scheme.as_deref().is_some_and(|s| !is_scheme(s)) {
            return None;
        }
        if let Some(domain) = authority.strip_prefix("*.") {
            return is_authority(domain).then(|| OriginPattern::Subdomains {
                scheme,
                suffix: format!(".{domain}"),
            });
        }
        (scheme.is_some() && is_authority(authority)).then(|| OriginPattern::Exact(text.clone()))
    }

    /// Whether `origin` (an `Origin` header value) matches.
    pub fn matches(&self, origin: &str) -> bool {
        match self {
            OriginPattern::Any => true,
            OriginPattern::Exact(exact) => origin.eq_ignore_ascii_case(exact),
            OriginPattern::Subdomains { scheme, suffix } => {
                let origin = origin.to_ascii_lowercase();
                let Some((their_scheme, authority)) = origin.split_once("://") else {
                    return false;
                };
                let scheme_ok = match scheme {
                    Some(scheme) => scheme == their_scheme,
                    None => their_scheme == "http" || their_scheme == "https",
                };
                scheme_ok
                    && authority
                        .strip_suffix(suffix.as_str())
                        .is_some_and(is_subdomain_labels)
            }
        }
    }
}

fn is_scheme(scheme: &str) -> bool {
    scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
}

/// `host[:port]`, with a host of DNS labels or an IP literal.
fn is_authority(authority: &str) -> bool {
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(':') && !port.contains(']') => (host, Some(port)),
        _ => (authority, None),
    };
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok());
    let host_ok = host.parse::<std::net::Ipv4Addr>().is_ok()
        || (host.starts_with('[') && host.ends_with(']'))
        || is_subdomain_labels(host);
    port_ok && host_ok
}

/// One or more DNS labels: letters, digits and `-`, separated by dots.
fn is_subdomain_labels(text: &str) -> bool {
    !text.is_empty()
        && text.split('.').all(|label| {
            !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}
