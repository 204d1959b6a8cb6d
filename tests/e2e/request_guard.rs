//! The request-guard plugin through the running gateway: clean requests
//! reach the upstream; oversized, mistyped, malformed and hostile ones are
//! answered by the guard.

use crate::support::{get_client, TestGateway};
use serde_json::json;

const ROUTES: &str = "
routes:
  - name: guarded
    upstream: a
    plugins:
      - name: request-guard
        config:
          max_body_bytes: 64
          allowed_content_types: [application/json]
          check_json: true
          rules: [{ name: no-admin, pattern: '^/admin', in: [path] }]
";

#[tokio::test(flavor = "multi_thread")]
async fn clean_requests_reach_the_upstream() {
    let gw = TestGateway::start(ROUTES).await;
    let client = get_client();
    let get = client.get(&gw.url("/api/items?q=rock+and+roll"), &[]).await;
    assert_eq!(get.status, 200);
    assert_eq!(get.json()["upstream"], "a");
    let post = client
        .send(
            "POST",
            &gw.url("/api/items"),
            &[("content-type", "application/json")],
            br#"{"name":"O'Brien"}"#,
        )
        .await
        .unwrap();
    assert_eq!(post.status, 200);
    assert_eq!(post.json()["body"], r#"{"name":"O'Brien"}"#);
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_paths_and_queries_get_400_naming_the_rule() {
    let gw = TestGateway::start(ROUTES).await;
    let client = get_client();
    let cases = [
        (
            "/files/..%252fetc/passwd",
            "path_traversal",
            "path_traversal.dot_segment",
        ),
        (
            "/items?id=1%20UNION%20SELECT%20password",
            "sqli",
            "sqli.union_select",
        ),
        (
            "/search?q=%3Cscript%3Ealert(1)%3C/script%3E",
            "xss",
            "xss.script_tag",
        ),
        ("//admin/users", "blocked", "no-admin"),
    ];
    for (path, code, rule) in cases {
        let reply = client.get(&gw.url(path), &[]).await;
        assert_eq!(reply.status, 400, "{path}");
        assert_eq!(reply.header("content-type"), Some("application/json"));
        let body = reply.json();
        assert_eq!(
            (body["code"].as_str(), body["rule"].as_str()),
            (Some(code), Some(rule)),
            "{path}"
        );
    }
    // Escaped dot-segments climbing above `/` never reach a plugin: the
    // gateway refuses them while canonicalising the path.
    let reply = client
        .get(&gw.url("/files/%2e%2e/%2e%2e/etc/passwd"), &[])
        .await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["code"], "path_rejected");
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_are_checked_for_size_type_and_json() {
    let gw = TestGateway::start(ROUTES).await;
    let client = get_client();
    let post = |content_type: &'static str, body: Vec<u8>| {
        let client = client.clone();
        let url = gw.url("/api/items");
        async move {
            client
                .send("POST", &url, &[("content-type", content_type)], &body)
                .await
                .unwrap()
        }
    };
    let big = post("application/json", vec![b' '; 100]).await;
    assert_eq!(big.status, 413);
    assert_eq!(
        big.json(),
        json!({"error": "body of 100 bytes exceeds the limit of 64 bytes", "code": "body_too_large"})
    );
    let xml = post("application/xml", b"<a/>".to_vec()).await;
    assert_eq!(xml.status, 415);
    assert_eq!(xml.json()["code"], "unsupported_media_type");
    let broken = post("application/json", b"{\"a\":".to_vec()).await;
    assert_eq!(broken.status, 400);
    assert_eq!(broken.json()["code"], "invalid_json");
}
