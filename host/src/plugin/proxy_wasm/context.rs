//! The state of one HTTP context (one request through one filter entry) as
//! the host holds it between callbacks: the header maps the filter edits in
//! place, the buffered bodies, the HTTP calls it dispatched, and how it
//! wants the stream to go on.

use super::abi::Pairs;
use crate::plugin::bindings::{HeaderChanges, Request, RequestChanges, Response, ResponseChanges};
use crate::plugin::PluginFault;
use http::header::{HeaderMap, HeaderName, HeaderValue};

/// One request's HTTP context: what the filter may read and edit.
#[derive(Debug, Default)]
pub struct Stream {
    /// The context id the filter knows the stream by.
    pub id: u32,
    /// Request headers, with the pseudo-headers `:method`, `:path`,
    /// `:authority` and `:scheme` first (Envoy's shape).
    pub request_headers: Pairs,
    pub request_body: Option<Vec<u8>>,
    /// Request trailers (lower-case names); empty when the request has none.
    pub request_trailers: Pairs,
    /// Response headers with `:status` first; empty before the response phase.
    pub response_headers: Pairs,
    pub response_body: Option<Vec<u8>>,
    /// Response trailers; empty when the response has none.
    pub response_trailers: Pairs,
    /// Facts the properties answer from.
    pub facts: Facts,
    /// The stream is held: a callback returned `Pause` and nothing resumed it.
    pub paused: bool,
    /// The filter answered the request itself.
    pub local_response: Option<Response>,
    /// Calls dispatched during the current callback, sent when it returns.
    pub pending_calls: Vec<PendingCall>,
    /// The answer to the call being delivered (`proxy_on_http_call_response`).
    pub call_response: Option<CallResponse>,
}

/// What the request was, for `proxy_get_property`.
#[derive(Debug, Default, Clone)]
pub struct Facts {
    pub request_id: String,
    pub client_addr: String,
    pub route: String,
    pub mtls: bool,
}

/// An HTTP call a filter dispatched with `proxy_http_call`.
#[derive(Debug)]
pub struct PendingCall {
    pub token: u32,
    pub upstream: String,
    pub method: String,
    pub path: String,
    pub headers: Pairs,
    pub body: Option<Vec<u8>>,
    pub timeout_ms: u32,
}

/// A call's answer as the filter reads it; a failed call has no headers.
#[derive(Debug, Default)]
pub struct CallResponse {
    pub headers: Pairs,
    pub body: Vec<u8>,
}

impl Stream {
    /// The context for `request`, as the filter will see it.
    pub fn for_request(id: u32, request: &Request, facts: Facts) -> Stream {
        let authority = request
            .headers
            .iter()
            .find(|(name, _)| name == "host")
            .map(|(_, value)| value.clone())
            .unwrap_or_default();
        let mut headers = Vec::with_capacity(request.headers.len() + 4);
        headers.push((":method".to_string(), request.method.clone()));
        headers.push((":path".to_string(), path_and_query(request)));
        headers.push((":authority".to_string(), authority));
        headers.push((":scheme".to_string(), "http".to_string()));
        headers.extend(request.headers.iter().cloned());
        Stream {
            id,
            request_headers: headers,
            request_body: request.body.clone(),
            facts,
            ..Stream::default()
        }
    }

    /// The filter's edits of `request` (which it has not touched) as the
    /// changes the chain applies: headers (pseudo-headers aside), `:path`
    /// as path and query, the body.
    pub fn request_changes(&mut self, request: &Request) -> RequestChanges {
        let path = header(&self.request_headers, ":path")
            .unwrap_or_default()
            .to_string();
        let (new_path, new_query) = match path.split_once('?') {
            Some((path, query)) => (path.to_string(), Some(query.to_string())),
            None => (path, None),
        };
        let moved = new_path != request.path || new_query != request.query;
        let body = self.request_body.take();
        RequestChanges {
            headers: header_changes(&request.headers, &self.request_headers),
            path: moved.then_some(new_path),
            query: moved.then(|| new_query.unwrap_or_default()),
            body: body.filter(|b| Some(b) != request.body.as_ref()),
        }
    }

    /// Loads `response` for the response callbacks.
    pub fn load_response(&mut self, response: &Response) {
        let mut headers = Vec::with_capacity(response.headers.len() + 1);
        headers.push((":status".to_string(), response.status.to_string()));
        headers.extend(response.headers.iter().cloned());
        self.response_headers = headers;
        self.response_body = response.body.clone();
    }

    /// The filter's edits of `response` as the changes the chain applies
    /// (`:status` included); a local response replaces it whole.
    pub fn response_changes(&mut self, response: &Response) -> ResponseChanges {
        if let Some(local) = self.local_response.take() {
            let mut headers = header_changes(&response.headers, &[]);
            headers.append = local.headers;
            return ResponseChanges {
                status: Some(local.status),
                headers,
                body: Some(local.body.unwrap_or_default()),
            };
        }
        let status = header(&self.response_headers, ":status")
            .and_then(|s| s.parse().ok())
            .filter(|s| *s != response.status);
        let body = self.response_body.take();
        ResponseChanges {
            status,
            headers: header_changes(&response.headers, &self.response_headers),
            body: body.filter(|b| Some(b) != response.body.as_ref()),
        }
    }
}

/// The edits that turn `before` into `after` (pseudo-headers ignored), in
/// the chain's terms: a name that went away is removed, a new name is
/// appended, a name now with one value is set, one with several is removed
/// and its new values appended, in order; untouched names are left alone.
pub fn header_changes(before: &[(String, String)], after: &[(String, String)]) -> HeaderChanges {
    let values = |pairs: &[(String, String)], name: &str| -> Vec<String> {
        pairs
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    };
    let mut changes = HeaderChanges {
        remove: Vec::new(),
        set: Vec::new(),
        append: Vec::new(),
    };
    let mut names: Vec<&str> = Vec::new();
    for (name, _) in before.iter().chain(after) {
        if !name.starts_with(':') && !names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            names.push(name);
        }
    }
    for name in names {
        let (old, mut new) = (values(before, name), values(after, name));
        if old == new {
            continue;
        }
        let name = name.to_ascii_lowercase();
        match (old.is_empty(), new.len()) {
            (_, 0) => changes.remove.push(name),
            (false, 1) => changes.set.push((name, new.remove(0))),
            (true, _) => changes
                .append
                .extend(new.into_iter().map(|v| (name.clone(), v))),
            (false, _) => {
                changes.remove.push(name.clone());
                changes
                    .append
                    .extend(new.into_iter().map(|v| (name.clone(), v)));
            }
        }
    }
    changes
}

/// A trailer section as the filter reads it: lower-case names, in order.
pub fn trailer_pairs(trailers: Option<&HeaderMap>) -> Pairs {
    trailers
        .into_iter()
        .flat_map(HeaderMap::iter)
        .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_string())))
        .collect()
}

/// The filter's trailer section back as a map (`None` when it emptied
/// it); a name or value that is not valid HTTP is an `invalid_output` fault.
pub fn trailer_map(pairs: &Pairs) -> Result<Option<HeaderMap>, PluginFault> {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        let invalid = || PluginFault::InvalidOutput(format!("invalid trailer `{name}`"));
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())?;
        let value = HeaderValue::from_str(value).map_err(|_| invalid())?;
        map.append(name, value);
    }
    Ok((!map.is_empty()).then_some(map))
}

/// `:path` as Envoy gives it: the path with its query.
fn path_and_query(request: &Request) -> String {
    match &request.query {
        Some(query) => format!("{}?{query}", request.path),
        None => request.path.clone(),
    }
}

/// The value of the first header called `name` (ASCII case-insensitive).
pub fn header<'a>(pairs: &'a Pairs, name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Request {
        Request {
            method: "GET".into(),
            path: "/a".into(),
            query: Some("x=1".into()),
            headers: vec![
                ("host".into(), "example".into()),
                ("x-a".into(), "1".into()),
            ],
            body: None,
            client_addr: "127.0.0.1:1".into(),
            route: "r".into(),
        }
    }

    #[test]
    fn the_filter_sees_pseudo_headers_and_its_edits_come_back_as_changes() {
        let request = request();
        let mut stream = Stream::for_request(2, &request, Facts::default());
        assert_eq!(header(&stream.request_headers, ":path"), Some("/a?x=1"));
        assert_eq!(
            header(&stream.request_headers, ":authority"),
            Some("example")
        );
        stream.request_headers.retain(|(n, _)| n != "x-a");
        stream.request_headers.push(("x-b".into(), "2".into()));
        stream.request_headers[1].1 = "/b".into();
        let changes = stream.request_changes(&request);
        assert_eq!(changes.path.as_deref(), Some("/b"));
        assert_eq!(changes.query.as_deref(), Some(""), "the query is cleared");
        assert_eq!(changes.headers.remove, vec!["x-a".to_string()]);
        assert_eq!(
            changes.headers.append,
            vec![("x-b".to_string(), "2".to_string())]
        );
        assert!(changes.headers.set.is_empty());
        assert!(changes.body.is_none());
    }

    #[test]
    fn untouched_headers_make_no_changes_and_a_changed_value_replaces_all_of_its_name() {
        let h = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        let before = h(&[("a", "1"), ("b", "1"), ("b", "2")]);
        let none = header_changes(&before, &before);
        assert!(none.remove.is_empty() && none.append.is_empty());
        let changes = header_changes(&before, &h(&[("a", "1"), ("b", "1"), ("b", "3")]));
        assert_eq!(changes.remove, vec!["b".to_string()]);
        assert_eq!(changes.append, h(&[("b", "1"), ("b", "3")]));
        let changes = header_changes(&before, &h(&[("a", "2"), ("c", "1")]));
        assert_eq!(changes.set, h(&[("a", "2")]));
        assert_eq!(changes.remove, vec!["b".to_string()]);
        assert_eq!(changes.append, h(&[("c", "1")]));
    }
}
