//! Route selection and the plain reverse-proxy behaviour.

use crate::support::{get_client, TestGateway};

const ROUTES: &str = "
routes:
  - name: all
    match: { path_prefix: / }
    upstream: a
    plugins: [{ name: probe, config: { tag: all } }]
  - name: api
    match: { path_prefix: /api }
    upstream: b
    plugins: [{ name: probe, config: { tag: api } }]
  - name: health
    match: { path: /api/health }
    upstream: a
    plugins: [{ name: probe, config: { tag: health } }]
  - name: admin-host
    match: { path_prefix: /api, host: admin.example.com }
    upstream: a
    plugins: [{ name: probe, config: { tag: admin-host } }]
  - name: api-post
    match: { path_prefix: /api, methods: [POST] }
    upstream: a
    plugins: [{ name: probe, config: { tag: api-post } }]
  - name: canary
    match: { path_prefix: /api, headers: { x-env: canary } }
    upstream: a
    plugins: [{ name: probe, config: { tag: canary } }]
";

#[tokio::test(flavor = "multi_thread")]
async fn most_specific_route_wins() {
    let gw = TestGateway::start(ROUTES).await;
    let client = get_client();
    // (method, path, request headers, route that must match, its upstream)
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: [Case; 7] = [
        ("GET", "/other", &[], "all", "a"),
        ("GET", "/api/users", &[], "api", "b"),
        ("GET", "/apiary", &[], "all", "a"),
        ("GET", "/api/health", &[], "health", "a"),
        (
            "GET",
            "/api/users",
            &[("host", "admin.example.com")],
            "admin-host",
            "a",
        ),
        ("POST", "/api/users", &[], "api-post", "a"),
        ("GET", "/api/users", &[("x-env", "canary")], "canary", "a"),
    ];
    for (method, path, headers, route, upstream) in cases {
        let reply = client
            .send(method, &gw.url(path), headers, b"")
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{method} {path}");
        assert_eq!(
            reply.upstream_header("x-chain").as_deref(),
            Some(route),
            "{method} {path} {headers:?}"
        );
        assert_eq!(reply.json()["upstream"], upstream, "{method} {path}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_route_is_404_json() {
    let gw = TestGateway::start(
        "routes:\n  - name: only\n    match: { path: /only }\n    upstream: a\n",
    )
    .await;
    let reply = get_client().get(&gw.url("/elsewhere"), &[]).await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json()["code"], "no_route");
    assert!(reply.header("x-request-id").is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_upstream_is_502_and_slow_one_is_504() {
    let gw = TestGateway::start(
        "routes:\n  - name: dead\n    match: { path: /dead }\n    upstream: dead\n  - name: slow\n    match: { path: /slow }\n    upstream: slow\n",
    )
    .await;
    let client = get_client();
    let dead = client.get(&gw.url("/dead"), &[]).await;
    assert_eq!(dead.status, 502);
    assert_eq!(dead.json()["code"], "upstream_unreachable");
    let started = std::time::Instant::now();
    let slow = client
        .get(&gw.url("/slow"), &[("x-echo-delay-ms", "3000")])
        .await;
    assert_eq!(slow.status, 504);
    assert_eq!(slow.json()["code"], "upstream_timeout");
    assert!(
        started.elapsed() < std::time::Duration::from_millis(2500),
        "timed out at the route's 300 ms, not the upstream's 3 s"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarding_headers_request_id_and_hop_by_hop() {
    let gw = TestGateway::start("routes:\n  - name: all\n    upstream: a\n").await;
    let client = get_client();
    let reply = client
        .get(
            &gw.url("/x?q=1"),
            &[
                ("x-forwarded-for", "203.0.113.9"),
                ("x-custom", "kept"),
                ("connection", "keep-alive, x-custom-hop"),
                ("x-custom-hop", "dropped"),
            ],
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.upstream_header("x-forwarded-for").as_deref(),
        Some("203.0.113.9, 127.0.0.1")
    );
    assert_eq!(
        reply.upstream_header("x-forwarded-proto").as_deref(),
        Some("http")
    );
    assert_eq!(reply.upstream_header("x-custom").as_deref(), Some("kept"));
    assert_eq!(
        reply.upstream_header("x-custom-hop"),
        None,
        "headers named in Connection are hop-by-hop"
    );
    assert_eq!(reply.json()["query"], "q=1");
    let id = reply
        .header("x-request-id")
        .expect("response carries the request id");
    assert_eq!(reply.upstream_header("x-request-id").as_deref(), Some(id));
    let given = client
        .get(&gw.url("/"), &[("x-request-id", "abc-123")])
        .await;
    assert_eq!(
        given.header("x-request-id"),
        Some("abc-123"),
        "a client's request id is kept"
    );
}
