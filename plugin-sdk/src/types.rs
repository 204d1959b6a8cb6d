//! Conveniences on the generated contract types, so plugin code reads as intent.

use crate::{HeaderChanges, Request, RequestChanges, Response, ResponseChanges};

fn find<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

impl Request {
    /// The first value of a header, matched case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        find(&self.headers, name)
    }

    /// The value of a cookie from the `cookie` header(s).
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == "cookie")
            .flat_map(|(_, v)| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }
}

impl Response {
    /// A response with a status and no headers or body.
    pub fn new(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: None,
        }
    }

    /// A JSON response; `content-type` is set for you.
    pub fn json(status: u16, body: &serde_json::Value) -> Self {
        Response {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Some(body.to_string().into_bytes()),
        }
    }

    /// The gateway's standard error body: `{"error": message, "code": code}`.
    pub fn error(status: u16, code: &str, message: &str) -> Self {
        Self::json(
            status,
            &serde_json::json!({ "error": message, "code": code }),
        )
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_string()));
        self
    }

    /// The first value of a header, matched case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        find(&self.headers, name)
    }
}

impl HeaderChanges {
    /// No header edits.
    pub fn new() -> Self {
        HeaderChanges {
            remove: Vec::new(),
            set: Vec::new(),
            append: Vec::new(),
        }
    }

    /// True when applying these changes does nothing.
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.append.is_empty()
    }
}

impl Default for HeaderChanges {
    fn default() -> Self {
        Self::new()
    }
}

macro_rules! header_builders {
    ($ty:ty) => {
        impl $ty {
            /// Replaces every value of `name` with `value`.
            pub fn set_header(mut self, name: &str, value: &str) -> Self {
                self.headers
                    .set
                    .push((name.to_ascii_lowercase(), value.to_string()));
                self
            }

            /// Adds a value to `name`, keeping existing ones.
            pub fn append_header(mut self, name: &str, value: &str) -> Self {
                self.headers
                    .append
                    .push((name.to_ascii_lowercase(), value.to_string()));
                self
            }

            /// Removes `name` entirely.
            pub fn remove_header(mut self, name: &str) -> Self {
                self.headers.remove.push(name.to_ascii_lowercase());
                self
            }

            /// Replaces the body.
            pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
                self.body = Some(body.into());
                self
            }
        }

        impl Default for $ty {
            fn default() -> Self {
                Self::new()
            }
        }
    };
}

header_builders!(RequestChanges);
header_builders!(ResponseChanges);

impl RequestChanges {
    /// No changes: go on as is.
    pub fn new() -> Self {
        RequestChanges {
            headers: HeaderChanges::new(),
            path: None,
            query: None,
            body: None,
        }
    }

    /// Rewrites the path sent upstream.
    pub fn path(mut self, path: &str) -> Self {
        self.path = Some(path.to_string());
        self
    }

    /// Rewrites the raw query string; `""` removes it.
    pub fn query(mut self, query: &str) -> Self {
        self.query = Some(query.to_string());
        self
    }
}

impl ResponseChanges {
    /// No changes.
    pub fn new() -> Self {
        ResponseChanges {
            status: None,
            headers: HeaderChanges::new(),
            body: None,
        }
    }

    /// Replaces the status code.
    pub fn status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }
}
