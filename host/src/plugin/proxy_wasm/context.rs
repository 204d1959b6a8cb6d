//! The state of one HTTP context (one request through one filter entry) as
//! the host holds it between callbacks: the header maps the filter edits in
//! place, the buffered bodies, the HTTP calls it dispatched, and how it
//! wants the stream to go on.

use super::abi::Pairs;
use crate::plugin::bindings::{Request, Response};

/// One request's HTTP context: what the filter may read and edit.
#[derive(Debug, Default)]
pub struct Stream {
    /// The context id the filter knows the stream by.
    pub id: u32,
    /// Request headers, with the pseudo-headers `:method`, `:path`,
    /// `:authority` and `:scheme` first (Envoy's shape).
    pub request_headers: Pairs,
    pub request_body: Option<Vec<u8>>,
    /// Response headers with `:status` first; empty before the response phase.
    pub response_headers: Pairs,
    pub response_body: Option<Vec<u8>>,
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

    /// Writes the filter's edits of the request back: headers (without the
    /// pseudo-headers), `:path` into path and query, and the body.
    pub fn apply_to_request(&mut self, request: &mut Request) {
        let mut headers = Vec::with_capacity(self.request_headers.len());
        for (name, value) in std::mem::take(&mut self.request_headers) {
            match name.as_str() {
                ":path" => match value.split_once('?') {
                    Some((path, query)) => {
                        request.path = path.to_string();
                        request.query = Some(query.to_string());
                    }
                    None => {
                        request.path = value;
                        request.query = None;
                    }
                },
                _ if name.starts_with(':') => {}
                _ => headers.push((name, value)),
            }
        }
        request.headers = headers;
        request.body = self.request_body.take();
    }

    /// Loads `response` for the response callbacks.
    pub fn load_response(&mut self, response: &Response) {
        let mut headers = Vec::with_capacity(response.headers.len() + 1);
        headers.push((":status".to_string(), response.status.to_string()));
        headers.extend(response.headers.iter().cloned());
        self.response_headers = headers;
        self.response_body = response.body.clone();
    }

    /// Writes the filter's edits of the response back (`:status` included).
    pub fn apply_to_response(&mut self, response: &mut Response) {
        let mut headers = Vec::with_capacity(self.response_headers.len());
        for (name, value) in std::mem::take(&mut self.response_headers) {
            if name == ":status" {
                if let Ok(status) = value.parse() {
                    response.status = status;
                }
            } else if !name.starts_with(':') {
                headers.push((name, value));
            }
        }
        response.headers = headers;
        response.body = self.response_body.take();
    }
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
    fn the_filter_sees_pseudo_headers_and_its_edits_come_back_without_them() {
        let mut request = request();
        let mut stream = Stream::for_request(2, &request, Facts::default());
        assert_eq!(header(&stream.request_headers, ":path"), Some("/a?x=1"));
        assert_eq!(
            header(&stream.request_headers, ":authority"),
            Some("example")
        );
        stream.request_headers.retain(|(n, _)| n != "x-a");
        stream.request_headers.push(("x-b".into(), "2".into()));
        stream.request_headers[1].1 = "/b".into();
        stream.apply_to_request(&mut request);
        assert_eq!(request.path, "/b");
        assert_eq!(request.query, None);
        assert_eq!(
            request.headers,
            vec![
                ("host".to_string(), "example".to_string()),
                ("x-b".into(), "2".into())
            ]
        );
    }
}
