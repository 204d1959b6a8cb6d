//! Upstream resilience over real sockets: balancing, retries and their
//! budget, per-route timeouts, passive ejection, active health checks with
//! readiness and metrics, and the circuit breaker. Each test counts what
//! every backend actually received.

use crate::support::{eventually, get_client, Backend, HttpClient, TestGateway};
use std::time::{Duration, Instant};

async fn statuses(client: &HttpClient, url: &str, n: usize) -> Vec<u16> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(client.get(url, &[]).await.status);
    }
    out
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn weighted_round_robin_splits_by_weight_and_a_route_may_pick_least_request() {
    let (x, y) = (Backend::start("x").await, Backend::start("y").await);
    let gw = TestGateway::start_config(&format!(
        "upstreams:
  pool:
    balance: weighted_round_robin
    targets: [{{ address: '{}', weight: 3 }}, {{ address: '{}', weight: 1 }}]
routes:
  - name: wrr
    match: {{ path_prefix: /wrr }}
    upstream: pool
  - name: least
    match: {{ path_prefix: /least }}
    upstream: pool
    balance: least_request
",
        x.addr, y.addr
    ))
    .await;
    let client = get_client();
    assert_eq!(statuses(&client, &gw.url("/wrr"), 40).await, [200; 40]);
    assert_eq!((x.hits(), y.hits()), (30, 10));

    // One slow request keeps its target busy; least_request sends everything
    // else to the idle one.
    let (x0, y0) = (x.hits(), y.hits());
    let slow = {
        let (client, url) = (client.clone(), gw.url("/least"));
        tokio::spawn(async move { client.get(&url, &[("x-echo-delay-ms", "1500")]).await })
    };
    eventually!("the slow request arrived", {
        x.hits() + y.hits() == x0 + y0 + 1
    });
    let x_busy = x.hits() == x0 + 1;
    assert_eq!(statuses(&client, &gw.url("/least"), 6).await, [200; 6]);
    let (busy, idle) = if x_busy {
        (x.hits() - x0, y.hits() - y0)
    } else {
        (y.hits() - y0, x.hits() - x0)
    };
    assert_eq!((busy, idle), (1, 6));
    assert_eq!(slow.await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_move_to_another_target_but_never_resend_a_non_idempotent_body() {
    let (x, y) = (Backend::start("x").await, Backend::start("y").await);
    y.stop().await;
    let gw = TestGateway::start_config(&format!(
        "upstreams:
  pool: {{ targets: ['{}', '{}'], retry_budget: {{ reserve: 100 }} }}
routes:
  - name: retry
    match: {{ path_prefix: /retry }}
    upstream: pool
    retries: {{ attempts: 1 }}
  - name: plain
    match: {{ path_prefix: /plain }}
    upstream: pool
",
        x.addr, y.addr
    ))
    .await;
    let client = get_client();

    // Without retries every other request meets the refused connection.
    let plain = statuses(&client, &gw.url("/plain"), 10).await;
    assert_eq!((count(&plain, 200), count(&plain, 502)), (5, 5));

    // With one retry, connect failures go to the other target, for any method.
    let x0 = x.hits();
    assert_eq!(statuses(&client, &gw.url("/retry"), 10).await, [200; 10]);
    for _ in 0..4 {
        let reply = client
            .send("POST", &gw.url("/retry"), &[], b"payload")
            .await
            .unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.json()["body"], "payload");
    }
    assert_eq!(x.hits() - x0, 14, "each request reached x exactly once");

    // A 5xx is retried for GET, never for POST (its body was sent).
    y.restart().await;
    y.set_status(500);
    let (x0, y0) = (x.hits(), y.hits());
    assert_eq!(statuses(&client, &gw.url("/retry"), 10).await, [200; 10]);
    assert_eq!(x.hits() - x0, 10);
    assert!(y.hits() > y0, "some GETs met the 500 first");
    let (x0, y0) = (x.hits(), y.hits());
    let mut posts = Vec::new();
    for _ in 0..4 {
        posts.push(
            client
                .send("POST", &gw.url("/retry"), &[], b"once")
                .await
                .unwrap()
                .status,
        );
    }
    assert_eq!((count(&posts, 200), count(&posts, 500)), (2, 2));
    assert_eq!(
        (x.hits() - x0, y.hits() - y0),
        (2, 2),
        "no POST was sent twice"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_retry_budget_caps_retries_across_requests() {
    let z = Backend::start("z").await;
    z.set_status(503);
    let gw = TestGateway::start_config(&format!(
        "upstreams:
  flaky:
    targets: ['{}']
    retry_budget: {{ ratio: 0, reserve: 2 }}
routes:
  - name: r
    upstream: flaky
    retries: {{ attempts: 3 }}
",
        z.addr
    ))
    .await;
    let client = get_client();
    assert_eq!(statuses(&client, &gw.url("/"), 3).await, [503; 3]);
    // 3 requests + the 2 retries the budget held; attempts: 3 alone would allow 9.
    assert_eq!(z.hits(), 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn timeouts_are_per_route() {
    let x = Backend::start("x").await;
    // A listener with a full backlog: connects to it hang instead of failing.
    let blackhole = {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        socket.listen(0).unwrap()
    };
    let hole = blackhole.local_addr().unwrap();
    let mut fillers = Vec::new();
    while let Ok(Ok(stream)) = tokio::time::timeout(
        Duration::from_millis(100),
        tokio::net::TcpStream::connect(hole),
    )
    .await
    {
        fillers.push(stream);
    }
    let gw = TestGateway::start_config(&format!(
        "upstreams:
  app: {{ targets: ['{}'], timeout_ms: 5000 }}
  hole: {{ targets: ['{hole}'] }}
routes:
  - name: short
    match: {{ path_prefix: /short }}
    upstream: app
    timeout_ms: 100
  - name: long
    match: {{ path_prefix: /long }}
    upstream: app
  - name: hole
    match: {{ path_prefix: /hole }}
    upstream: hole
    connect_timeout_ms: 100
",
        x.addr
    ))
    .await;
    let client = get_client();
    let started = Instant::now();
    let reply = client
        .get(&gw.url("/short"), &[("x-echo-delay-ms", "2000")])
        .await;
    assert_eq!(reply.status, 504);
    assert_eq!(reply.json()["code"], "upstream_timeout");
    assert!(started.elapsed() < Duration::from_millis(1500));
    let reply = client
        .get(&gw.url("/long"), &[("x-echo-delay-ms", "300")])
        .await;
    assert_eq!(reply.status, 200);

    let started = Instant::now();
    let reply = client.get(&gw.url("/hole"), &[]).await;
    assert_eq!(reply.status, 504, "{:?}", reply.json());
    assert_eq!(reply.json()["code"], "upstream_connect_timeout");
    assert!(started.elapsed() < Duration::from_millis(1500));
    drop(fillers);
}

#[tokio::test(flavor = "multi_thread")]
async fn consecutive_failures_eject_a_target_until_the_ejection_ends() {
    let (x, y) = (Backend::start("x").await, Backend::start("y").await);
    y.set_status(500);
    let gw = TestGateway::start_config(&format!(
        "upstreams:
  pool:
    targets: ['{}', '{}']
    passive_health: {{ consecutive_failures: 2, ejection_ms: 300 }}
routes:
  - name: r
    upstream: pool
",
        x.addr, y.addr
    ))
    .await;
    let client = get_client();
    let seen = statuses(&client, &gw.url("/"), 12).await;
    assert_eq!((count(&seen, 200), count(&seen, 500)), (10, 2));
    assert_eq!(y.hits(), 2, "ejected after its second failure in a row");

    y.set_status(200);
    let url = gw.url("/");
    eventually!("the ejected target gets traffic again", {
        client.get(&url, &[]).await;
        y.hits() > 2
    });
}

async fn healthy_gauge(gw: &TestGateway, upstream: &str, target: &str) -> Option<String> {
    let text = get_client().get(&gw.admin_url("/metrics"), &[]).await.body;
    let series =
        format!("wasmgate_upstream_target_healthy{{target=\"{target}\",upstream=\"{upstream}\"}} ");
    String::from_utf8_lossy(&text)
        .lines()
        .find_map(|l| l.strip_prefix(&series).map(str::to_string))
}

#[tokio::test(flavor = "multi_thread")]
async fn active_health_checks_drive_traffic_readiness_and_metrics() {
    let (x, y, z) = (
        Backend::start("x").await,
        Backend::start("y").await,
        Backend::start("z").await,
    );
    let check = "health_check: { path: /health, interval_ms: 20, timeout_ms: 200, healthy_threshold: 2, unhealthy_threshold: 2 }";
    let gw = TestGateway::start_config(&format!(
        "admin: {{ address: '127.0.0.1:0' }}
upstreams:
  hc:
    targets: ['{}', '{}']
    {check}
  solo:
    targets: ['{}']
    {check}
routes:
  - name: hc
    match: {{ path_prefix: /hc }}
    upstream: hc
  - name: solo
    match: {{ path_prefix: /solo }}
    upstream: solo
",
        x.addr, y.addr, z.addr
    ))
    .await;
    let client = get_client();
    assert_eq!(client.get(&gw.admin_url("/readyz"), &[]).await.status, 200);
    eventually!("targets are probed", y.checks() >= 2);

    // y fails its checks: it is marked unhealthy and gets no traffic.
    y.set_check_status(503);
    let y_addr = y.addr.to_string();
    eventually!("y is reported unhealthy", {
        healthy_gauge(&gw, "hc", &y_addr).await.as_deref() == Some("0")
    });
    let y0 = y.hits();
    assert_eq!(statuses(&client, &gw.url("/hc"), 10).await, [200; 10]);
    assert_eq!(y.hits(), y0);
    let upstreams = client
        .get(&gw.admin_url("/admin/upstreams"), &[])
        .await
        .json();
    assert_eq!(upstreams[0]["name"], "hc");
    assert_eq!(upstreams[0]["targets"][1]["healthy"], false);
    assert_eq!(upstreams[0]["targets"][0]["healthy"], true);

    // z goes away: `solo` has no healthy target, so the gateway is not ready.
    z.stop().await;
    let readyz = gw.admin_url("/readyz");
    eventually!("readyz reports solo", {
        let reply = client.get(&readyz, &[]).await;
        reply.status == 503 && reply.json()["unhealthy_upstreams"] == serde_json::json!(["solo"])
    });
    let reply = client.get(&gw.url("/solo"), &[]).await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.json()["code"], "no_healthy_upstream");
    assert_eq!(
        healthy_gauge(&gw, "hc", &x.addr.to_string())
            .await
            .as_deref(),
        Some("1")
    );

    // Both recover after `healthy_threshold` passing checks.
    z.restart().await;
    y.set_check_status(200);
    eventually!("ready again", {
        client.get(&readyz, &[]).await.status == 200
    });
    let hc = gw.url("/hc");
    eventually!("y gets traffic again", {
        client.get(&hc, &[]).await;
        y.hits() > y0
    });
    assert_eq!(client.get(&gw.url("/solo"), &[]).await.status, 200);
}

async fn circuit_gauge(gw: &TestGateway, upstream: &str) -> Option<String> {
    let text = get_client().get(&gw.admin_url("/metrics"), &[]).await.body;
    let series = format!("wasmgate_upstream_circuit_state{{upstream=\"{upstream}\"}} ");
    String::from_utf8_lossy(&text)
        .lines()
        .find_map(|l| l.strip_prefix(&series).map(str::to_string))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_circuit_breaker_opens_fails_fast_probes_and_closes() {
    let x = Backend::start("x").await;
    let gw = TestGateway::start_config(&format!(
        "admin: {{ address: '127.0.0.1:0' }}
upstreams:
  br:
    targets: ['{}']
    circuit_breaker: {{ consecutive_failures: 3, open_ms: 200 }}
routes:
  - name: r
    upstream: br
",
        x.addr
    ))
    .await;
    let client = get_client();
    let url = gw.url("/");
    assert_eq!(circuit_gauge(&gw, "br").await.as_deref(), Some("0"));

    x.set_status(500);
    assert_eq!(statuses(&client, &url, 3).await, [500; 3]);
    let reply = client.get(&url, &[]).await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.json()["code"], "circuit_open");
    assert_eq!(x.hits(), 3, "an open circuit sends nothing");
    assert_eq!(circuit_gauge(&gw, "br").await.as_deref(), Some("1"));

    // After open_ms one probe goes through; it fails, so the circuit reopens.
    eventually!("a half-open probe reaches x", {
        client.get(&url, &[]).await;
        x.hits() == 4
    });
    assert_eq!(client.get(&url, &[]).await.json()["code"], "circuit_open");
    assert_eq!(x.hits(), 4);

    // x recovers: the next probe succeeds and the circuit closes.
    x.set_status(200);
    eventually!("the circuit closes", {
        client.get(&url, &[]).await.status == 200
    });
    assert_eq!(statuses(&client, &url, 5).await, [200; 5]);
    assert_eq!(circuit_gauge(&gw, "br").await.as_deref(), Some("0"));
    let upstreams = client
        .get(&gw.admin_url("/admin/upstreams"), &[])
        .await
        .json();
    assert_eq!(upstreams[0]["circuit_state"], "closed");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_example_config_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/resilience/wasmgate.yaml");
    let gateway = wasmgate::validate(&path).await.expect("example validates");
    assert_eq!(gateway.upstreams.len(), 2);
}
