//! The admin dashboard in a real browser: headless Chromium loads the page
//! from a running gateway, runs its JavaScript against the admin API, and
//! the test reads the DOM it rendered. The same run writes the README's
//! screenshot (`docs/dashboard.png`).

use crate::support::{get_client, install_plugin, TestGateway};
use std::path::Path;
use std::time::Duration;

const ROUTES: &str = "
routes:
  - name: dash-api
    match: { path_prefix: /api }
    upstream: a
    plugins:
      - { name: probe, config: { tag: d } }
      - { name: headers, config: { request: { add: { x-from: dashboard } } } }
  - name: dash-public
    match: { path_prefix: / }
    upstream: b
";

/// The page's DOM after its scripts ran for a (virtual) `budget_ms`.
async fn rendered(url: &str, budget_ms: u32) -> String {
    let output = chromium(&[
        "--dump-dom",
        &format!("--virtual-time-budget={budget_ms}"),
        url,
    ])
    .await;
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs headless Chromium with `args`; fails the test with a clear message
/// when it is not installed (`scripts/test-deps.sh` installs it).
async fn chromium(args: &[&str]) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    // Blocking, on its own thread: the gateway serving the page runs in
    // this process.
    let output = tokio::task::spawn_blocking(move || {
        let profile = tempfile::tempdir().unwrap();
        std::process::Command::new("timeout")
            .args([
                "60",
                "chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
            ])
            .arg("--hide-scrollbars")
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(&args)
            .output()
    })
    .await
    .unwrap()
    .expect("chromium runs (install it with scripts/test-deps.sh)");
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The `data-max` of the chart of `metric` for `route`, if the page drew it.
fn chart_max(dom: &str, route: &str, metric: &str) -> Option<f64> {
    let tag = format!("data-route=\"{route}\" data-metric=\"{metric}\"");
    let at = dom.find(&tag)?;
    let rest = &dom[at..];
    let value = rest.split("data-max=\"").nth(1)?.split('"').next()?;
    value.parse().ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_shows_routes_plugins_live_traffic_and_reloads() {
    let gw = TestGateway::start(&format!("admin: {{ address: '127.0.0.1:0' }}\n{ROUTES}")).await;
    let page = gw.admin_url("/");

    let dom = rendered(&page, 3000).await;
    for expected in [
        ">dash-api<",
        ">dash-public<",
        "data-plugin=\"probe\"",
        "data-plugin=\"headers\"",
        "fail_closed",
        "probe.wasm",
    ] {
        assert!(
            dom.contains(expected),
            "no `{expected}` in the page:\n{dom}"
        );
    }
    assert!(
        chart_max(&dom, "dash-api", "rps").unwrap_or(0.0) == 0.0,
        "traffic shown before any was sent"
    );

    let client = get_client();
    for _ in 0..60 {
        assert_eq!(client.get(&gw.url("/api/x"), &[]).await.status, 200);
    }
    // Two sampling intervals: the traffic lands in a sample.
    tokio::time::sleep(
        wasmgate::admin::dashboard::traffic::INTERVAL * 2 + Duration::from_millis(500),
    )
    .await;
    let dom = rendered(&page, 3000).await;
    let rps = chart_max(&dom, "dash-api", "rps").expect("a req/s chart for dash-api");
    assert!(rps > 0.0, "the req/s chart did not move: {rps}");
    assert!(chart_max(&dom, "dash-api", "p99_ms").unwrap_or(0.0) > 0.0);

    install_plugin(&gw.plugins_dir(), "probe-v2.wasm", "probe");
    assert!(gw.next_reload_event(0).await.ok);
    let dom = rendered(&page, 3000).await;
    assert!(
        dom.contains("data-event=\"reload\" data-ok=\"true\""),
        "no successful reload in the events:\n{dom}"
    );

    let plugin = gw.plugins_dir().join("probe.wasm");
    std::fs::write(&plugin, b"\0asm not really").unwrap();
    let failed = gw.next_reload_event(1).await;
    assert!(!failed.ok);
    let dom = rendered(&page, 3000).await;
    assert!(
        dom.contains("data-event=\"reload\" data-ok=\"false\""),
        "no failed reload in the events:\n{dom}"
    );
    assert!(
        dom.contains("probe.wasm") && dom.contains("class=\"bad\""),
        "the failed reload's error is not shown:\n{dom}"
    );

    let screenshot = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/dashboard.png");
    std::fs::create_dir_all(screenshot.parent().unwrap()).unwrap();
    chromium(&[
        &format!("--screenshot={}", screenshot.display()),
        "--window-size=1280,1100",
        "--virtual-time-budget=3000",
        &page,
    ])
    .await;
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 10_000);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_token_the_admin_api_and_the_page_need_it() {
    let gw = TestGateway::start(&format!(
        "admin: {{ address: '127.0.0.1:0', token: 's3cret-admin-token' }}\n{ROUTES}"
    ))
    .await;
    let client = get_client();
    for path in ["/", "/admin/stats", "/admin/routes", "/metrics"] {
        let reply = client.get(&gw.admin_url(path), &[]).await;
        assert_eq!(reply.status, 401, "{path} without the token");
        let wrong = client
            .get(
                &gw.admin_url(path),
                &[("authorization", "Bearer s3cret-admin-tokeN")],
            )
            .await;
        assert_eq!(wrong.status, 401, "{path} with a wrong token");
        let right = client
            .get(
                &gw.admin_url(path),
                &[("authorization", "Bearer s3cret-admin-token")],
            )
            .await;
        assert_eq!(right.status, 200, "{path} with the token");
    }
    assert_eq!(client.get(&gw.admin_url("/healthz"), &[]).await.status, 200);
    assert_eq!(client.get(&gw.admin_url("/readyz"), &[]).await.status, 200);
    let dom = rendered(&gw.admin_url("/?token=s3cret-admin-token"), 3000).await;
    assert!(
        dom.contains(">dash-api<"),
        "the page did not pass its token on:\n{dom}"
    );
}
