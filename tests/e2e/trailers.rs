//! HTTP trailers through the gateway: a real upstream sending chunked
//! trailers and real HTTP/1.1 and h2c clients sending them, on a plain
//! route and on routes whose plugins buffer bodies. A trailer never carries
//! what the gateway would refuse in a header: framing, routing, forwarding
//! or a forged identity header.

use crate::support::{built_plugin, gateway_log, GatewayOptions, TestGateway};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;

/// A body of `data` then `trailers`, as a stream, so HTTP/1 sends it chunked.
pub type TrailingBody =
    StreamBody<futures::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

pub fn trailing(data: &'static [u8], trailers: &[(&str, &str)]) -> TrailingBody {
    let map: HeaderMap = trailers
        .iter()
        .map(|(n, v)| {
            (
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            )
        })
        .collect();
    StreamBody::new(futures::stream::iter(vec![
        Ok(Frame::data(Bytes::from_static(data))),
        Ok(Frame::trailers(map)),
    ]))
}

/// The `Trailer` header announcing `trailers` (hyper sends only those).
fn announced(trailers: &[(&str, &str)]) -> String {
    trailers
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the upstream sends after its body.
pub const UPSTREAM_TRAILERS: [(&str, &str); 3] = [
    ("grpc-status", "0"),
    ("x-forwarded-for", "6.6.6.6"),
    ("x-request-id", "forged"),
];

/// An HTTP/1.1 upstream answering every request with a JSON body of the
/// request trailers it received (and its `te` header), then
/// [`UPSTREAM_TRAILERS`] — or, for `/big`, one trailer of 9 000 bytes.
pub async fn trailer_upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let service = hyper::service::service_fn(|request: Request<Incoming>| async move {
                let te = request
                    .headers()
                    .get("te")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let big = request.uri().path() == "/big";
                let collected = request.into_body().collect().await.unwrap();
                let seen: serde_json::Map<String, serde_json::Value> = collected
                    .trailers()
                    .into_iter()
                    .flat_map(HeaderMap::iter)
                    .map(|(n, v)| (n.to_string(), v.to_str().unwrap().into()))
                    .collect();
                let body = serde_json::json!({ "trailers": seen, "te": te, "body": String::from_utf8_lossy(&collected.to_bytes()) }).to_string();
                let big_value = "b".repeat(9000);
                let trailers: Vec<(&str, &str)> = if big {
                    vec![("x-big", big_value.as_str())]
                } else {
                    UPSTREAM_TRAILERS.to_vec()
                };
                let body: &'static [u8] = Box::leak(body.into_bytes().into_boxed_slice());
                let response = Response::builder()
                    .header("trailer", announced(&trailers))
                    .body(trailing(body, &trailers))
                    .unwrap();
                Ok::<_, Infallible>(response)
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    addr
}

/// A response read whole, trailers apart.
pub struct Answer {
    pub status: u16,
    pub json: serde_json::Value,
    pub trailers: Option<HeaderMap>,
}

impl Answer {
    /// What the upstream saw of request trailer `name`.
    pub fn upstream_trailer(&self, name: &str) -> Option<&str> {
        self.json["trailers"][name].as_str()
    }

    pub fn trailer(&self, name: &str) -> Option<&str> {
        self.trailers.as_ref()?.get(name)?.to_str().ok()
    }
}

/// Sends a POST of `hello` then `trailers` (announced in `Trailer`, with
/// `TE: trailers`) to `addr` over HTTP/1.1, or h2c with `h2`.
pub async fn send(
    addr: SocketAddr,
    path: &str,
    trailers: &[(&str, &str)],
    extra: &[(&str, &str)],
    h2: bool,
) -> Result<Answer, String> {
    let stream = TokioIo::new(tokio::net::TcpStream::connect(addr).await.unwrap());
    let mut request = Request::post(format!("http://{addr}{path}"))
        .header("te", "trailers")
        .header("trailer", announced(trailers));
    if !h2 {
        request = request.header("host", addr.to_string());
    }
    for (n, v) in extra {
        request = request.header(*n, *v);
    }
    let request = request.body(trailing(b"hello", trailers)).unwrap();
    let response = if h2 {
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), stream)
                .await
                .unwrap();
        tokio::spawn(conn);
        sender.send_request(request).await
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(stream).await.unwrap();
        tokio::spawn(conn);
        sender.send_request(request).await
    }
    .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let collected = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?;
    let trailers = collected.trailers().cloned();
    let bytes = collected.to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    Ok(Answer {
        status,
        json,
        trailers,
    })
}

/// `/plain` has no plugin; `/auth` runs `api-key` (so `x-consumer` is an
/// identity header); `/buffered` runs a plugin that reads both bodies;
/// `/pw` the Proxy-Wasm filter `tests/proxy-wasm/trailers`.
fn routes() -> &'static str {
    "limits:
  max_header_bytes: 8192
routes:
  - name: auth
    match: { path_prefix: /auth }
    upstream: tr
    plugins:
      - name: api-key
        config: { keys: [{ key: key-of-alice, consumer: alice }] }
  - name: buffered
    match: { path_prefix: /buffered }
    upstream: tr
    plugins:
      - { name: probe, config: { tag: u, upper_body: true } }
  - name: pw
    match: { path_prefix: /pw }
    upstream: tr
    plugins:
      - name: pw-trailers
  - name: plain
    match: { path_prefix: / }
    upstream: tr
"
}

async fn gateway() -> TestGateway {
    let upstream = trailer_upstream().await;
    let upstreams = format!("  tr: {{ targets: ['{upstream}'] }}\n");
    let extra = [(built_plugin("proxywasm-trailers.wasm"), "pw-trailers")];
    TestGateway::start_opts(
        routes(),
        GatewayOptions {
            upstreams: &upstreams,
            extra_plugins: &extra,
            ..GatewayOptions::default()
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn trailers_pass_both_ways_on_a_plain_route_over_http1_and_h2() {
    let gw = gateway().await;
    for h2 in [false, true] {
        let answer = send(gw.addr, "/plain", &[("x-checksum", "abc")], &[], h2)
            .await
            .unwrap();
        assert_eq!(answer.status, 200, "h2: {h2}");
        assert_eq!(answer.json["body"], "hello");
        assert_eq!(answer.json["te"], "trailers", "TE: trailers goes on");
        assert_eq!(
            answer.upstream_trailer("x-checksum"),
            Some("abc"),
            "h2: {h2}"
        );
        assert_eq!(answer.trailer("grpc-status"), Some("0"), "h2: {h2}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn trailers_survive_a_plugin_buffering_both_bodies() {
    let gw = gateway().await;
    for h2 in [false, true] {
        let answer = send(gw.addr, "/buffered", &[("x-checksum", "abc")], &[], h2)
            .await
            .unwrap();
        assert_eq!(answer.status, 200, "h2: {h2}");
        assert_eq!(answer.json["body"], "HELLO", "the plugin saw the body");
        assert_eq!(
            answer.upstream_trailer("x-checksum"),
            Some("abc"),
            "h2: {h2}"
        );
        assert_eq!(answer.trailer("grpc-status"), Some("0"), "h2: {h2}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trailer_cannot_carry_framing_routing_forwarding_or_a_forged_identity() {
    let gw = gateway().await;
    let forged = [
        ("x-ok", "1"),
        ("x-consumer", "alice"),
        ("x-forwarded-for", "6.6.6.6"),
        ("connection", "close"),
        ("cookie", "session=stolen"),
        ("forwarded", "for=6.6.6.6"),
        (
            "traceparent",
            "00-00000000000000000000000000000001-0000000000000001-01",
        ),
    ];
    for path in ["/plain", "/auth", "/buffered"] {
        let answer = send(
            gw.addr,
            path,
            &forged,
            &[("x-api-key", "key-of-alice")],
            false,
        )
        .await
        .unwrap();
        assert_eq!(answer.status, 200, "{path}: {:?}", answer.json);
        let seen = answer.json["trailers"].as_object().unwrap();
        assert_eq!(
            seen.keys().collect::<Vec<_>>(),
            ["x-ok"],
            "{path}: only the harmless trailer reaches the upstream"
        );
        let trailers = answer.trailers.expect("response trailers");
        assert_eq!(trailers.len(), 1, "{path}: {trailers:?}");
        assert_eq!(trailers["grpc-status"], "0");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trailer_section_over_the_header_limit_is_refused() {
    let gw = gateway().await;
    let big = "a".repeat(9000);
    let answer = send(gw.addr, "/plain", &[("x-big", &big)], &[], false)
        .await
        .unwrap();
    assert_eq!(answer.status, 400, "{:?}", answer.json);
    assert_eq!(answer.json["code"], "body_unreadable");
    let broken = send(gw.addr, "/big", &[], &[], false).await;
    assert!(
        broken.is_err(),
        "an oversized upstream trailer breaks the response off"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proxy_wasm_filter_reads_and_edits_trailers_both_ways() {
    let gw = gateway().await;
    for h2 in [false, true] {
        let sent = [("x-checksum", "abc"), ("x-drop-me", "1")];
        let answer = send(gw.addr, "/pw", &sent, &[], h2).await.unwrap();
        assert_eq!(answer.status, 200, "h2: {h2}: {:?}", answer.json);
        assert_eq!(answer.upstream_trailer("x-checksum"), Some("abc"));
        assert_eq!(
            answer.upstream_trailer("x-pw-checksum"),
            Some("abc"),
            "h2: {h2}"
        );
        assert_eq!(
            answer.upstream_trailer("x-drop-me"),
            None,
            "removed by the filter"
        );
        assert_eq!(answer.trailer("grpc-status"), Some("0"), "h2: {h2}");
        assert_eq!(answer.trailer("x-pw-grpc-status"), Some("0"), "h2: {h2}");
        assert_eq!(answer.trailer("grpc-message"), Some("edited"), "h2: {h2}");
        let no_trailers = send(gw.addr, "/pw", &[], &[], h2).await.unwrap();
        assert_eq!(no_trailers.status, 200);
        assert!(no_trailers.json["trailers"].as_object().unwrap().is_empty());
    }
    assert!(
        !gateway_log().contains("callback without trailers"),
        "the trailers callbacks run only when there are trailers"
    );
}
