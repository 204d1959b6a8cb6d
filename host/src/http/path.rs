//! The one canonical form of a request path, decided before routing.
//!
//! The router, every plugin, the access log, metrics and the upstream all
//! see this form, so what a policy judged is what the upstream reads: a
//! backend that resolves `/public/../api` or `/%61pi` itself can no longer
//! be reached around the `/api` route's plugins. The rules (RFC 3986 §6.2.2
//! and §5.2.4, like Envoy's `normalize_path` + `merge_slashes`):
//!
//! - percent-encoded unreserved characters are decoded (`%61` → `a`,
//!   `%2e` → `.`), every other escape has upper-case hex (`%2f` → `%2F`);
//! - repeated slashes merge (`//api` → `/api`);
//! - `.` and `..` segments are removed; a path climbing above `/` is refused;
//! - encoded slashes (`%2F`, `%5C`) and raw `\`, and `;` path parameters,
//!   are what [`PathPolicy`] says (refused by default);
//! - a bad escape, an escaped control character or escapes that do not
//!   decode to UTF-8 are refused.

use serde::Deserialize;
use std::borrow::Cow;
use std::fmt::Write as _;

/// What to do with `%2F`, `%5C` and raw `\` in a path: backends disagree on
/// whether they separate segments, so by default the gateway refuses them
/// (Envoy's `path_with_escaped_slashes_action`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EscapedSlashes {
    /// 400: the request is ambiguous (Envoy `REJECT_REQUEST`).
    #[default]
    Reject,
    /// Forward them encoded (`%2F`, `%5C`; a raw `\` as `%5C`); they never
    /// separate segments for routing (Envoy `KEEP_UNCHANGED`).
    Keep,
    /// Treat them as `/` before routing (Envoy `UNESCAPE_AND_FORWARD`).
    Unescape,
}

/// What to do with `;` in a path: Tomcat, Jetty and Spring strip `;params`
/// from each segment before matching, so `/api;x=1/users` is `/api/users`
/// to them and something else to a prefix match.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathParameters {
    /// 400.
    #[default]
    Reject,
    /// Forward `;` as an ordinary character (it never ends a segment for routing).
    Keep,
    /// Remove `;params` from every segment before routing.
    Strip,
}

/// How a listener or a route canonicalises paths; see the module doc.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PathPolicy {
    pub escaped_slashes: EscapedSlashes,
    pub path_parameters: PathParameters,
}

/// A [`PathPolicy`] whose fields may be left to the enclosing level
/// (listener over the top level, route over its listener).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PathPolicyOverride {
    pub escaped_slashes: Option<EscapedSlashes>,
    pub path_parameters: Option<PathParameters>,
}

impl PathPolicy {
    /// This policy with `over`'s fields where it sets them.
    pub fn with(self, over: &PathPolicyOverride) -> PathPolicy {
        PathPolicy {
            escaped_slashes: over.escaped_slashes.unwrap_or(self.escaped_slashes),
            path_parameters: over.path_parameters.unwrap_or(self.path_parameters),
        }
    }

    /// The policy to route by: what this one would refuse is kept instead,
    /// so the route's own policy (which may differ) decides whether to refuse.
    /// Kept escapes never separate segments, so they cannot reach a route.
    pub fn for_routing(self) -> PathPolicy {
        PathPolicy {
            escaped_slashes: match self.escaped_slashes {
                EscapedSlashes::Reject => EscapedSlashes::Keep,
                other => other,
            },
            path_parameters: match self.path_parameters {
                PathParameters::Reject => PathParameters::Keep,
                other => other,
            },
        }
    }

    /// Canonicalises `raw` under this policy: the form to route and forward,
    /// or why the path is refused.
    pub fn canonicalize<'a>(&self, raw: &'a str) -> Result<Cow<'a, str>, PathError> {
        let canonical = canonicalize(
            raw,
            self.escaped_slashes == EscapedSlashes::Unescape,
            self.path_parameters == PathParameters::Strip,
        )?;
        if canonical.escaped_slash && self.escaped_slashes == EscapedSlashes::Reject {
            return Err(PathError::EscapedSlash);
        }
        if canonical.parameters && self.path_parameters == PathParameters::Reject {
            return Err(PathError::Parameters);
        }
        Ok(canonical.path)
    }
}

/// Why a path is refused (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path must start with `/`")]
    NotAbsolute,
    #[error("the path has a `%` not followed by two hex digits")]
    BadEscape,
    #[error("the path has an escaped control character")]
    ControlCharacter,
    #[error("the path's escapes do not decode to UTF-8")]
    NotUtf8,
    #[error("the path climbs above `/` with `..`")]
    AboveRoot,
    #[error("the path has an encoded slash or a backslash, which this route refuses")]
    EscapedSlash,
    #[error("the path has `;` parameters, which this route refuses")]
    Parameters,
}

/// A canonical path and what canonicalising it met, for the policy to judge.
#[derive(Debug, PartialEq, Eq)]
struct Canonical<'a> {
    path: Cow<'a, str>,
    /// `%2F`, `%5C` or a raw `\` was present.
    escaped_slash: bool,
    /// A `;` was present.
    parameters: bool,
}

/// Canonicalises `raw`; `unescape_slashes` makes `%2F`/`%5C`/`\` separate
/// segments, `strip_parameters` drops `;params` from every segment.
fn canonicalize(
    raw: &str,
    unescape_slashes: bool,
    strip_parameters: bool,
) -> Result<Canonical<'_>, PathError> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    if is_canonical(bytes) {
        return Ok(Canonical {
            path: Cow::Borrowed(raw),
            escaped_slash: false,
            parameters: false,
        });
    }
    let mut escaped_slash = false;
    let mut parameters = false;
    // Segments as canonical text; a boundary is a `/` (or an unescaped slash).
    let mut segments: Vec<String> = Vec::new();
    let mut segment = String::new();
    let mut in_parameters = false;
    let mut i = 1;
    let mut ends_with_boundary = false;
    while i < bytes.len() {
        let b = bytes[i];
        i += 1;
        let (decoded, was_escaped) = match b {
            b'%' => {
                let hex = bytes.get(i..i + 2).ok_or(PathError::BadEscape)?;
                let value = hex_value(hex[0])
                    .zip(hex_value(hex[1]))
                    .map(|(h, l)| h << 4 | l)
                    .ok_or(PathError::BadEscape)?;
                i += 2;
                (value, true)
            }
            _ => (b, false),
        };
        let is_slash = decoded == b'/' && was_escaped || decoded == b'\\';
        if b == b'/' || is_slash && unescape_slashes {
            escaped_slash |= is_slash;
            push_segment(&mut segments, std::mem::take(&mut segment))?;
            in_parameters = false;
            ends_with_boundary = true;
            continue;
        }
        ends_with_boundary = false;
        if is_slash {
            escaped_slash = true;
        }
        if decoded == b';' && !was_escaped {
            parameters = true;
            in_parameters = strip_parameters;
        }
        if in_parameters {
            continue;
        }
        if decoded < 0x20 || decoded == 0x7f {
            return Err(PathError::ControlCharacter);
        }
        if is_unreserved(decoded) || !was_escaped && !is_slash && decoded.is_ascii_graphic() {
            segment.push(decoded as char);
        } else {
            let _ = write!(segment, "%{decoded:02X}");
        }
    }
    let trailing = ends_with_boundary || matches!(segment.as_str(), "." | "..");
    push_segment(&mut segments, segment)?;
    let mut path = String::with_capacity(raw.len());
    for segment in &segments {
        path.push('/');
        path.push_str(segment);
    }
    if trailing && !segments.is_empty() || segments.is_empty() {
        path.push('/');
    }
    if percent_encoding::percent_decode_str(&path)
        .decode_utf8()
        .is_err()
    {
        return Err(PathError::NotUtf8);
    }
    Ok(Canonical {
        path: Cow::Owned(path),
        escaped_slash,
        parameters,
    })
}

/// Adds one finished segment: empty and `.` vanish, `..` removes the last.
fn push_segment(segments: &mut Vec<String>, segment: String) -> Result<(), PathError> {
    match segment.as_str() {
        "" | "." => Ok(()),
        ".." => segments.pop().map(drop).ok_or(PathError::AboveRoot),
        _ => {
            segments.push(segment);
            Ok(())
        }
    }
}

/// True when no rule can change `bytes`: the common case, checked in one
/// pass so most requests canonicalise without allocating.
fn is_canonical(bytes: &[u8]) -> bool {
    let mut previous = 0u8;
    for &b in bytes {
        match b {
            b'%' | b'\\' | b';' => return false,
            b'/' | b'.' if previous == b'/' => return false,
            _ if !b.is_ascii_graphic() => return false,
            _ => {}
        }
        previous = b;
    }
    true
}

/// RFC 3986 §2.3: characters that never need escaping.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(raw: &str) -> Result<String, PathError> {
        PathPolicy::default().canonicalize(raw).map(Cow::into_owned)
    }

    fn with(policy: PathPolicy, raw: &str) -> Result<String, PathError> {
        policy.canonicalize(raw).map(Cow::into_owned)
    }

    #[test]
    fn canonical_paths_are_borrowed() {
        for raw in ["/", "/api/users", "/a-b_c~d/e.f", "/x/", "/a:b@c!$&'()*+,="] {
            assert!(matches!(
                PathPolicy::default().canonicalize(raw),
                Ok(Cow::Borrowed(p)) if p == raw
            ));
        }
    }

    #[test]
    fn dot_segments_are_removed() {
        assert_eq!(canon("/public/../api/users").unwrap(), "/api/users");
        assert_eq!(canon("/./api/users").unwrap(), "/api/users");
        assert_eq!(canon("/public/%2e%2e/api").unwrap(), "/api");
        assert_eq!(canon("/public/%2E./api").unwrap(), "/api");
        assert_eq!(canon("/a/b/..").unwrap(), "/a/");
        assert_eq!(canon("/a/.").unwrap(), "/a/");
        assert_eq!(canon("/a/..").unwrap(), "/");
        assert_eq!(canon("/.well-known/x").unwrap(), "/.well-known/x");
        assert_eq!(canon("/a/..b/c").unwrap(), "/a/..b/c");
    }

    #[test]
    fn climbing_above_the_root_is_refused() {
        assert_eq!(canon("/.."), Err(PathError::AboveRoot));
        assert_eq!(canon("/a/../../api"), Err(PathError::AboveRoot));
        assert_eq!(canon("/%2e%2e/api"), Err(PathError::AboveRoot));
    }

    #[test]
    fn slashes_merge() {
        assert_eq!(canon("//api/users").unwrap(), "/api/users");
        assert_eq!(canon("/api///users//").unwrap(), "/api/users/");
    }

    #[test]
    fn unreserved_escapes_decode_and_the_rest_get_upper_case_hex() {
        assert_eq!(canon("/%61pi/users").unwrap(), "/api/users");
        assert_eq!(canon("/a%20b%3f").unwrap(), "/a%20b%3F");
        assert_eq!(canon("/caf%c3%a9").unwrap(), "/caf%C3%A9");
    }

    #[test]
    fn bad_escapes_control_characters_and_broken_utf8_are_refused() {
        assert_eq!(canon("/a%2"), Err(PathError::BadEscape));
        assert_eq!(canon("/a%zz"), Err(PathError::BadEscape));
        assert_eq!(canon("/a%00b"), Err(PathError::ControlCharacter));
        assert_eq!(canon("/a%0d%0a"), Err(PathError::ControlCharacter));
        assert_eq!(canon("/%c0%ae%c0%ae/api"), Err(PathError::NotUtf8));
        assert_eq!(canon("api"), Err(PathError::NotAbsolute));
        assert_eq!(canon("*"), Err(PathError::NotAbsolute));
    }

    #[test]
    fn escaped_slashes_follow_the_policy() {
        assert_eq!(canon("/api%2fusers"), Err(PathError::EscapedSlash));
        assert_eq!(canon("/api%5Cusers"), Err(PathError::EscapedSlash));
        assert_eq!(canon("/api\\users"), Err(PathError::EscapedSlash));
        let keep = PathPolicy {
            escaped_slashes: EscapedSlashes::Keep,
            ..PathPolicy::default()
        };
        assert_eq!(with(keep, "/api%2fusers").unwrap(), "/api%2Fusers");
        assert_eq!(with(keep, "/api\\users").unwrap(), "/api%5Cusers");
        assert_eq!(with(keep, "/a/..%2f..%2fb").unwrap(), "/a/..%2F..%2Fb");
        let unescape = PathPolicy {
            escaped_slashes: EscapedSlashes::Unescape,
            ..PathPolicy::default()
        };
        assert_eq!(with(unescape, "/api%2fusers").unwrap(), "/api/users");
        assert_eq!(with(unescape, "/api\\users").unwrap(), "/api/users");
        assert_eq!(
            with(unescape, "/x/..%2f..%2fapi"),
            Err(PathError::AboveRoot)
        );
        assert_eq!(with(unescape, "/x/y/..%5c..%5capi").unwrap(), "/api");
    }

    #[test]
    fn path_parameters_follow_the_policy() {
        assert_eq!(canon("/api;x=1/users"), Err(PathError::Parameters));
        let keep = PathPolicy {
            path_parameters: PathParameters::Keep,
            ..PathPolicy::default()
        };
        assert_eq!(with(keep, "/api;x=1/users").unwrap(), "/api;x=1/users");
        let strip = PathPolicy {
            path_parameters: PathParameters::Strip,
            ..PathPolicy::default()
        };
        assert_eq!(
            with(strip, "/api;x=1/users;jsessionid=2").unwrap(),
            "/api/users"
        );
        assert_eq!(with(strip, "/public/..;/api").unwrap(), "/api");
        assert_eq!(canon("/a%3Bb").unwrap(), "/a%3Bb");
    }

    #[test]
    fn canonical_form_is_a_fixed_point() {
        let keep_all = PathPolicy {
            escaped_slashes: EscapedSlashes::Keep,
            path_parameters: PathParameters::Keep,
        };
        for raw in [
            "/public/../api",
            "//a//b/",
            "/%61%2f%5c\\;x",
            "/a/./b/../c/%7e",
            "/caf%c3%a9/",
        ] {
            let once = with(keep_all, raw).unwrap();
            assert_eq!(with(keep_all, &once).unwrap(), once, "{raw}");
        }
    }
}
