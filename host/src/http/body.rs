//! The one body type the gateway passes around, and the JSON error responses
//! every failure path uses.

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full};

/// Boxed error any body may fail with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A streaming or buffered body: client request bodies and upstream
/// responses stream through untouched unless a plugin asks to see them.
pub type Body = BoxBody<Bytes, BoxError>;

/// A buffered body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// Wraps any body (e.g. hyper's `Incoming`) as a [`Body`].
pub fn boxed<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed()
}

/// The gateway's error response: `{"error": message, "code": code}`.
pub fn json_error(status: http::StatusCode, code: &str, message: &str) -> http::Response<Body> {
    let body = serde_json::json!({ "error": message, "code": code }).to_string();
    http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(full(body))
        .expect("static response parts are valid")
}
