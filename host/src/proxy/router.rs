//! Picks the route for a request: host, path (exact or prefix), methods and
//! headers, most specific first.

use crate::config::MatchConfig;
use http::{HeaderMap, Method};

/// A compiled route matcher, ordered by specificity at build time so a lookup
/// is a single scan that stops at the first match.
#[derive(Debug)]
pub struct Router {
    /// (matcher, index of the route in the config), most specific first.
    entries: Vec<(Matcher, usize)>,
}

#[derive(Debug)]
struct Matcher {
    host: Option<String>,
    path: PathMatch,
    methods: Vec<Method>,
    headers: Vec<(http::HeaderName, String)>,
    case_insensitive: bool,
}

#[derive(Debug)]
enum PathMatch {
    Any,
    Exact(String),
    Prefix(String),
}

impl Matcher {
    fn new(m: &MatchConfig) -> Matcher {
        let path = match (&m.path, &m.path_prefix) {
            (Some(p), _) => PathMatch::Exact(p.clone()),
            (None, Some(p)) => PathMatch::Prefix(p.clone()),
            (None, None) => PathMatch::Any,
        };
        Matcher {
            host: m.host.as_ref().map(|h| h.to_ascii_lowercase()),
            path,
            methods: m.methods.iter().filter_map(|s| s.parse().ok()).collect(),
            headers: m
                .headers
                .iter()
                .filter_map(|(k, v)| Some((k.parse().ok()?, v.clone())))
                .collect(),
            case_insensitive: m.case_insensitive,
        }
    }

    /// Higher is more specific: exact path beats any prefix, a longer prefix
    /// beats a shorter one; then host, methods and headers break ties.
    fn specificity(&self) -> (u8, usize, bool, bool, usize) {
        let (kind, len) = match &self.path {
            PathMatch::Exact(p) => (2, p.len()),
            PathMatch::Prefix(p) => (1, p.len()),
            PathMatch::Any => (0, 0),
        };
        (
            kind,
            len,
            self.host.is_some(),
            !self.methods.is_empty(),
            self.headers.len(),
        )
    }

    fn matches(
        &self,
        host: Option<&str>,
        path: &str,
        method: &Method,
        headers: &HeaderMap,
    ) -> bool {
        let same = |a: &str, b: &str| match self.case_insensitive {
            true => a.eq_ignore_ascii_case(b),
            false => a == b,
        };
        let path_ok = match &self.path {
            PathMatch::Any => true,
            PathMatch::Exact(p) => same(path, p),
            PathMatch::Prefix(p) => {
                path.get(..p.len()).is_some_and(|head| same(head, p))
                    && (p.ends_with('/')
                        || path.len() == p.len()
                        || path.as_bytes()[p.len()] == b'/')
            }
        };
        path_ok
            && self
                .host
                .as_ref()
                .is_none_or(|h| host.is_some_and(|got| got.eq_ignore_ascii_case(h)))
            && (self.methods.is_empty() || self.methods.contains(method))
            && self
                .headers
                .iter()
                .all(|(name, value)| headers.get_all(name).iter().any(|v| v == value.as_str()))
    }
}

impl Router {
    /// Builds a router from the routes' match blocks, in config order.
    pub fn new<'a>(matchers: impl IntoIterator<Item = &'a MatchConfig>) -> Router {
        let mut entries: Vec<(Matcher, usize)> = matchers
            .into_iter()
            .enumerate()
            .map(|(i, m)| (Matcher::new(m), i))
            .collect();
        // Stable sort: equally specific routes keep config order.
        entries.sort_by_key(|(m, _)| std::cmp::Reverse(m.specificity()));
        Router { entries }
    }

    /// The index of the best route for a request, if any.
    pub fn find(
        &self,
        method: &Method,
        host: Option<&str>,
        path: &str,
        headers: &HeaderMap,
    ) -> Option<usize> {
        let host = host.map(host_name);
        self.entries
            .iter()
            .find(|(m, _)| m.matches(host, path, method, headers))
            .map(|(_, i)| *i)
    }
}

/// The name a `Host` names: `example.com:8080` → `example.com`;
/// `[::1]:80` → `[::1]`; the fully qualified `example.com.` → `example.com`
/// (the same virtual host to most backends, so it must match the same route).
fn host_name(host: &str) -> &str {
    let name = match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => &host[..i],
        _ => host,
    };
    name.strip_suffix('.').unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(yaml: &str) -> MatchConfig {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    fn find(router: &Router, method: &str, host: &str, path: &str) -> Option<usize> {
        router.find(
            &method.parse().unwrap(),
            Some(host),
            path,
            &HeaderMap::new(),
        )
    }

    #[test]
    fn most_specific_route_wins_regardless_of_order() {
        let routes = [
            m("{}"),
            m("path_prefix: /api"),
            m("path_prefix: /api/users"),
            m("path: /api/users/me"),
            m("{path_prefix: /api, host: admin.example.com}"),
            m("{path_prefix: /api, methods: [POST]}"),
        ];
        let r = Router::new(&routes);
        assert_eq!(find(&r, "GET", "x", "/other"), Some(0));
        assert_eq!(find(&r, "GET", "x", "/api/orders"), Some(1));
        assert_eq!(find(&r, "GET", "x", "/api/users/42"), Some(2));
        assert_eq!(find(&r, "GET", "x", "/api/users/me"), Some(3));
        assert_eq!(find(&r, "GET", "admin.example.com:8080", "/api/x"), Some(4));
        assert_eq!(find(&r, "POST", "x", "/api/x"), Some(5));
        assert_eq!(find(&r, "GET", "ADMIN.example.com.:80", "/api/x"), Some(4));
    }

    #[test]
    fn prefix_matches_on_segment_boundaries() {
        let r = Router::new(&[m("path_prefix: /api")]);
        assert_eq!(find(&r, "GET", "x", "/api"), Some(0));
        assert_eq!(find(&r, "GET", "x", "/api/"), Some(0));
        assert_eq!(find(&r, "GET", "x", "/apiary"), None);
    }

    #[test]
    fn case_insensitive_matches_ignore_ascii_case() {
        let r = Router::new(&[
            m("path_prefix: /api"),
            m("{path_prefix: /admin, case_insensitive: true}"),
        ]);
        assert_eq!(find(&r, "GET", "x", "/API/users"), None);
        assert_eq!(find(&r, "GET", "x", "/ADMIN/users"), Some(1));
        assert_eq!(find(&r, "GET", "x", "/aDmIn"), Some(1));
        assert_eq!(find(&r, "GET", "x", "/admins"), None);
    }

    #[test]
    fn header_match_requires_the_value() {
        let r = Router::new(&[m("headers: {x-env: canary}")]);
        let mut h = HeaderMap::new();
        assert_eq!(r.find(&Method::GET, None, "/", &h), None);
        h.insert("x-env", "canary".parse().unwrap());
        assert_eq!(r.find(&Method::GET, None, "/", &h), Some(0));
    }
}
