//! Demo upstreams: a tiny echo server that answers with what it received, so
//! the quickstart (and the end-to-end tests) can see what the gateway and its
//! plugins did to a request.
//!
//! The reply also says which HTTP version the request arrived in.
//! Test hooks: `x-echo-status: NNN` picks the status, `x-echo-delay-ms: N`
//! delays the answer.

use crate::http::body::{full, Body};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Serves the echo upstream named `name` on `listener` until the task is dropped.
pub async fn serve_echo(listener: TcpListener, name: String) {
    let name: Arc<str> = name.into();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let name = name.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let name = name.clone();
                async move { Ok::<_, Infallible>(echo(&name, request).await) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn echo(name: &str, request: http::Request<Incoming>) -> http::Response<Body> {
    let (parts, body) = request.into_parts();
    let header = |n: &str| parts.headers.get(n).and_then(|v| v.to_str().ok());
    if let Some(ms) = header("x-echo-delay-ms").and_then(|v| v.parse().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let status = header("x-echo-status")
        .and_then(|v| v.parse::<u16>().ok())
        .and_then(|s| http::StatusCode::from_u16(s).ok())
        .unwrap_or(http::StatusCode::OK);
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut headers = serde_json::Map::new();
    for (k, v) in &parts.headers {
        headers.insert(k.to_string(), String::from_utf8_lossy(v.as_bytes()).into());
    }
    let reply = serde_json::json!({
        "upstream": name,
        "method": parts.method.as_str(),
        "version": format!("{:?}", parts.version),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    });
    http::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(full(reply.to_string()))
        .expect("valid response")
}
