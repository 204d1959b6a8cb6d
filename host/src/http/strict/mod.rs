//! Strict HTTP: requests another server could read differently from the
//! gateway are refused before routing (400 JSON, connection closed), the way
//! nginx ≥ 1.21 and Envoy do. hyper already refuses bad request lines,
//! NUL and bare CR in a head, obsolete line folding and malformed chunk
//! sizes; [`framing`] catches what hyper repairs silently; [`check_head`]
//! judges the `Host` rules of RFC 9112 §3.2 and RFC 9113 §8.3.1.

pub mod framing;

use http::header::{self, HeaderValue};
use http::{Request, Version};

/// Why a request head is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("an HTTP/1.1 request must have a Host header")]
    MissingHost,
    #[error("the request has more than one Host header")]
    RepeatedHost,
    #[error("the Host header is not a valid host[:port]")]
    BadHost,
    #[error("the Host header and the request's authority differ")]
    HostMismatch,
    #[error("{0}")]
    Framing(#[from] framing::Violation),
}

/// Checks the `Host` rules and returns the authority the request is for:
/// the target's own (absolute-form, or HTTP/2's `:authority`) or `Host`'s.
/// In absolute-form `Host` is replaced by the target's authority (RFC 9112
/// §3.2.2), so the upstream reads the host the route was chosen for.
pub fn check_head<B>(request: &mut Request<B>) -> Result<Option<HeaderValue>, HeadError> {
    let mut hosts = request.headers().get_all(header::HOST).iter();
    let host = hosts.next().cloned();
    if hosts.next().is_some() {
        return Err(HeadError::RepeatedHost);
    }
    if let Some(host) = &host {
        valid_host(host.as_bytes())?;
    }
    let authority = request
        .uri()
        .authority()
        .map(|a| HeaderValue::from_str(a.as_str()));
    match (request.version(), authority, host) {
        (_, Some(Err(_)), _) => Err(HeadError::BadHost),
        (Version::HTTP_2 | Version::HTTP_3, Some(Ok(authority)), Some(host)) => {
            if !authority.as_bytes().eq_ignore_ascii_case(host.as_bytes()) {
                return Err(HeadError::HostMismatch);
            }
            Ok(Some(authority))
        }
        (Version::HTTP_11, _, None) => Err(HeadError::MissingHost),
        (_, Some(Ok(authority)), _) => {
            valid_host(authority.as_bytes())?;
            if request.version() < Version::HTTP_2 {
                request
                    .headers_mut()
                    .insert(header::HOST, authority.clone());
            }
            Ok(Some(authority))
        }
        (_, None, host) => Ok(host),
    }
}

/// `host[:port]` with no user info, path or stray characters: what a
/// virtual host can be selected by.
fn valid_host(host: &[u8]) -> Result<(), HeadError> {
    if is_plain_host(host) {
        return Ok(());
    }
    parsed_host_is_valid(host)
}

/// `name[:port]`, the name of letters, digits, `-`, `.` and `_`, the port
/// 1–5 digits, at most 255 bytes: the `Host` nearly every request sends,
/// accepted without building an `http` authority for it (a copy and a
/// parse, ~1 200 instructions per request). It accepts nothing
/// [`parsed_host_is_valid`] refuses (tested over every short string of the
/// characters that matter); anything else gets that full check.
fn is_plain_host(host: &[u8]) -> bool {
    let (name, port) = match host.iter().position(|&b| b == b':') {
        Some(colon) => (&host[..colon], Some(&host[colon + 1..])),
        None => (host, None),
    };
    host.len() <= 255
        && !name.is_empty()
        && name.iter().copied().all(is_name_byte)
        && port.is_none_or(|p| (1..=5).contains(&p.len()) && p.iter().all(u8::is_ascii_digit))
}

/// A byte of a plain (not bracketed) host name: letter, digit, `-`, `.`, `_`.
fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')
}

/// The full check: `host` parses as an `http` authority that is exactly
/// itself, with a plain or bracketed host and a numeric port if any.
fn parsed_host_is_valid(host: &[u8]) -> Result<(), HeadError> {
    let text = std::str::from_utf8(host).map_err(|_| HeadError::BadHost)?;
    if text.is_empty() || text.contains('@') {
        return Err(HeadError::BadHost);
    }
    let authority: http::uri::Authority = text.parse().map_err(|_| HeadError::BadHost)?;
    if authority.as_str() != text {
        return Err(HeadError::BadHost);
    }
    let name = authority.host();
    let plain = name.bytes().all(is_name_byte);
    let bracketed_ip = name.starts_with('[') && name.ends_with(']');
    let port = &text[name.len()..];
    let port_ok =
        port.is_empty() || port.len() > 1 && port[1..].bytes().all(|b| b.is_ascii_digit());
    if !plain && !bracketed_ip || !port_ok {
        return Err(HeadError::BadHost);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(version: Version, uri: &str, hosts: &[&str]) -> Request<()> {
        let mut r = Request::builder().version(version).uri(uri);
        for h in hosts {
            r = r.header(header::HOST, *h);
        }
        r.body(()).unwrap()
    }

    #[test]
    fn the_plain_host_fast_path_accepts_nothing_the_full_check_refuses() {
        let alphabet = b"aZ09-._:@[]/% \x80";
        let mut text = Vec::new();
        let mut accepted = 0;
        for len in 1..=5u32 {
            for mut n in 0..alphabet.len().pow(len) {
                text.clear();
                for _ in 0..len {
                    text.push(alphabet[n % alphabet.len()]);
                    n /= alphabet.len();
                }
                if is_plain_host(&text) {
                    accepted += 1;
                    assert_eq!(
                        parsed_host_is_valid(&text),
                        Ok(()),
                        "{:?}",
                        String::from_utf8_lossy(&text)
                    );
                }
            }
        }
        assert!(accepted > 1000, "the corpus exercises the fast path");
        for host in ["h:65535", "h:99999", "h:00000", "a.b.example-1.com:8080"] {
            assert!(is_plain_host(host.as_bytes()), "{host}");
            assert_eq!(parsed_host_is_valid(host.as_bytes()), Ok(()), "{host}");
        }
        let long = "a".repeat(256);
        assert!(
            !is_plain_host(long.as_bytes()),
            "long names take the full check"
        );
        for refused in [
            "", ":80", "h:", "h:123456", "h:8a", "a@b", "h:80:80", "[::1]",
        ] {
            assert!(!is_plain_host(refused.as_bytes()), "{refused}");
        }
    }

    #[test]
    fn host_rules() {
        let check = |v, uri, hosts: &[&str]| check_head(&mut request(v, uri, hosts));
        assert_eq!(
            check(Version::HTTP_11, "/", &[]),
            Err(HeadError::MissingHost)
        );
        assert_eq!(check(Version::HTTP_10, "/", &[]), Ok(None));
        assert_eq!(
            check(Version::HTTP_11, "/", &["a", "b"]),
            Err(HeadError::RepeatedHost)
        );
        for bad in ["a b", "user@a", "a/b", "a:x", "", "a\\b", "a%2eb"] {
            assert_eq!(
                check(Version::HTTP_11, "/", &[bad]),
                Err(HeadError::BadHost),
                "{bad}"
            );
        }
        for good in [
            "example.com",
            "example.com:8080",
            "[::1]:80",
            "127.0.0.1",
            "EXAMPLE.com.",
        ] {
            assert!(check(Version::HTTP_11, "/", &[good]).is_ok(), "{good}");
        }
        assert_eq!(
            check(Version::HTTP_2, "http://a/", &["b"]),
            Err(HeadError::HostMismatch)
        );
    }

    #[test]
    fn absolute_form_replaces_host() {
        let mut r = request(Version::HTTP_11, "http://internal/x", &["public"]);
        let authority = check_head(&mut r).unwrap();
        assert_eq!(authority.unwrap(), "internal");
        assert_eq!(r.headers()[header::HOST], "internal");
    }
}
