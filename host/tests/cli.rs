//! The `wasmgate` binary's exit codes and messages, run as a user would.

use std::path::Path;
use std::process::Command;

fn wasmgate(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wasmgate"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("wasmgate runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn validate_accepts_the_quickstart() {
    let config = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/quickstart/wasmgate.yaml"
    );
    let (ok, stdout, stderr) = wasmgate(&["validate", "--config", config]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("ok (2 routes, 2 upstreams, plugins: api-key, headers)"),
        "{stdout}"
    );
}

#[test]
fn validate_names_file_line_and_problem() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "listeners: [{ address: '127.0.0.1:0' }]\nupstreams:\n  a: { targets: ['127.0.0.1:1'] }\nroutes:\n  - name: r\n    upstream: a\n    plugins: [{ name: x, on_error: sometimes }]\n",
    )
    .unwrap();
    let (ok, _, stderr) = wasmgate(&["validate", "--config", file.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        stderr.contains(&format!("error: {}:7:", file.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("unknown variant `sometimes`, expected `fail_closed` or `fail_open`"),
        "{stderr}"
    );
}

#[test]
fn validate_warns_when_an_explicit_strip_list_lets_an_identity_header_through() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gw.yaml");
    let plugins = format!("{}/../target/plugins", env!("CARGO_MANIFEST_DIR"));
    let write = |strip: &str| {
        std::fs::write(
            &file,
            format!("listeners: [{{ address: '127.0.0.1:0' }}]\nplugins: {{ dir: '{plugins}' }}\n{strip}upstreams:\n  a: {{ targets: ['127.0.0.1:1'] }}\nroutes:\n  - name: api\n    upstream: a\n    plugins:\n      - name: api-key\n        config: {{ keys: [{{ key: key-of-alice, consumer: alice }}] }}\n"),
        )
        .unwrap();
    };
    write("strip_request_headers: [x-internal]\n");
    let (ok, _, stderr) = wasmgate(&["validate", "--config", file.to_str().unwrap()]);
    assert!(ok, "a warning, not an error: {stderr}");
    assert!(
        stderr.contains("warning: ")
            && stderr.contains("route `api`: plugin `api-key` writes identity header `x-consumer`, which strip_request_headers does not list"),
        "{stderr}"
    );
    for quiet in ["", "strip_request_headers: [x-internal, X-Consumer]\n"] {
        write(quiet);
        let (ok, _, stderr) = wasmgate(&["validate", "--config", file.to_str().unwrap()]);
        assert!(ok && !stderr.contains("warning"), "{quiet}: {stderr}");
    }
}

#[test]
fn validate_reports_a_missing_plugin_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gw.yaml");
    std::fs::write(
        &file,
        "listeners: [{ address: '127.0.0.1:0' }]\nplugins: { dir: nowhere }\nupstreams:\n  a: { targets: ['127.0.0.1:1'] }\nroutes:\n  - name: r\n    upstream: a\n    plugins: [{ name: ghost }]\n",
    )
    .unwrap();
    let (ok, _, stderr) = wasmgate(&["validate", "--config", file.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        stderr.contains("nowhere/ghost.wasm: cannot read plugin"),
        "{stderr}"
    );
}

/// A built plugin of this workspace (`make plugins`).
fn built(dir: &str, name: &str) -> String {
    format!("{}/../target/{dir}/{name}.wasm", env!("CARGO_MANIFEST_DIR"))
}

/// The smallest component claiming `wasmgate:plugin/handler@{version}`: an
/// exported empty instance, all the version check looks at.
fn component_exporting_handler(version: &str) -> Vec<u8> {
    let mut component = wasm_encoder::Component::new();
    let mut instances = wasm_encoder::ComponentInstanceSection::new();
    instances.export_items([]);
    component.section(&instances);
    let mut exports = wasm_encoder::ComponentExportSection::new();
    exports.export(
        &format!("wasmgate:plugin/handler@{version}"),
        wasm_encoder::ComponentExportKind::Instance,
        0,
        None,
    );
    component.section(&exports);
    component.finish()
}

#[test]
fn inspect_shows_contract_capabilities_and_size() {
    let file = built("plugins", "api-key");
    let (ok, stdout, stderr) = wasmgate(&["plugin", "inspect", &file]);
    assert!(ok, "{stderr}");
    let size = std::fs::metadata(&file).unwrap().len();
    assert!(
        stdout.contains(&format!("size:      {size} bytes")),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "contract:  wasmgate:plugin/handler@0.1.0 (compatible with this host, @0.1.0)"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("wasmgate:plugin/log@0.1.0"), "{stdout}");
    assert!(!stdout.contains("wasmgate:plugin/kv@"), "{stdout}");
    assert!(stdout.contains("wasi:cli/environment@"), "{stdout}");
}

#[test]
fn inspect_json_lists_every_capability_the_probe_caps_build_imports() {
    let (ok, stdout, stderr) = wasmgate(&[
        "plugin",
        "inspect",
        "--json",
        &built("test-plugins", "probe-caps"),
    ]);
    assert!(ok, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["contract_version"], "0.1.0");
    assert_eq!(report["incompatible"], serde_json::Value::Null);
    let imported = |name: &str| {
        report["imports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == format!("wasmgate:plugin/{name}@0.1.0"))
            .cloned()
    };
    for capability in ["context", "kv", "outbound", "metrics"] {
        let import = imported(capability).unwrap_or_else(|| panic!("{capability}: {stdout}"));
        assert_eq!(import["kind"], "wasmgate");
    }
    assert!(imported("kv").unwrap()["functions"]
        .as_array()
        .unwrap()
        .contains(&"increment".into()));
}

#[test]
fn an_incompatible_contract_is_refused_by_inspect_and_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let file = plugins.join("future.wasm");
    std::fs::write(&file, component_exporting_handler("0.2.0")).unwrap();
    let reason = "built against contract wasmgate:plugin@0.2.0, but this gateway implements @0.1.0";

    let (ok, stdout, stderr) = wasmgate(&["plugin", "inspect", file.to_str().unwrap()]);
    assert!(!ok, "{stdout}");
    assert!(
        stdout.contains("contract:  wasmgate:plugin/handler@0.2.0 (INCOMPATIBLE: "),
        "{stdout}"
    );
    assert!(stderr.contains(reason), "{stderr}");

    let config = dir.path().join("gw.yaml");
    std::fs::write(
        &config,
        "listeners: [{ address: '127.0.0.1:0' }]\nplugins: { dir: plugins }\nupstreams:\n  a: { targets: ['127.0.0.1:1'] }\nroutes:\n  - name: r\n    upstream: a\n    plugins: [{ name: future }]\n",
    )
    .unwrap();
    let (ok, _, stderr) = wasmgate(&["validate", "--config", config.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        stderr.contains("future.wasm: incompatible with the plugin contract: "),
        "{stderr}"
    );
    assert!(stderr.contains(reason), "{stderr}");
}

#[test]
fn inspect_refuses_a_file_that_is_not_a_component() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notes.wasm");
    std::fs::write(&file, "not wasm").unwrap();
    let (ok, _, stderr) = wasmgate(&["plugin", "inspect", file.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        stderr.contains("notes.wasm: not a valid Wasm component"),
        "{stderr}"
    );
}

fn repo_file(path: &str) -> String {
    format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn plugin_test_passes_the_cases_of_built_in_plugins() {
    for (plugin, cases) in [("api-key", 5), ("rate-limit", 5), ("aggregate", 3)] {
        let (ok, stdout, stderr) = wasmgate(&[
            "plugin",
            "test",
            &built("plugins", plugin),
            &repo_file(&format!("plugins/{plugin}/cases.yaml")),
        ]);
        assert!(ok, "{plugin}: {stdout}{stderr}");
        assert!(
            stdout.ends_with(&format!("\n{cases} passed, 0 failed\n")),
            "{plugin}: {stdout}"
        );
        assert!(!stdout.contains("FAIL"), "{stdout}");
    }
}

#[test]
fn plugin_test_checks_kv_faults_and_metrics_of_the_probe() {
    let dir = tempfile::tempdir().unwrap();
    let cases = dir.path().join("cases.yaml");
    std::fs::write(
        &cases,
        r#"
config: { kv_count: hits, metric: seen }
cases:
  - name: counts in kv from a seeded value
    kv: { hits: 41 }
    expect:
      continue: { headers: { set: { x-count: 42, x-chain: '', x-probe-version: 1 } } }
      kv: { hits: 42, other: null }
      metrics: [{ counter: seen, value: 1, labels: { route: test-route } }]
  - name: kv is fresh in every case
    steps:
      - expect: { context: {}, kv: { hits: 1 } }
      - expect: { continue: {}, kv: { hits: 2 } }
  - name: a trap is a fault
    config: { fault: trap }
    expect: { fault: trapped }
  - name: a refusal is reported
    config: { reject: not today }
    expect: { refused: not today }
"#,
    )
    .unwrap();
    let (ok, stdout, stderr) = wasmgate(&[
        "plugin",
        "test",
        &built("test-plugins", "probe-caps"),
        cases.to_str().unwrap(),
    ]);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.ends_with("\n4 passed, 0 failed\n"), "{stdout}");
}

#[test]
fn plugin_test_shows_expected_versus_actual_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let cases = dir.path().join("cases.yaml");
    std::fs::write(
        &cases,
        "config: { keys: [{ key: key-of-alice, consumer: alice }] }\ncases:\n  - name: good key\n    request: { headers: { x-api-key: key-of-alice } }\n    expect: { continue: {}, context: { consumer: alice } }\n  - name: no key\n    expect:\n      respond: { status: 403 }\n      logs: [{ message: hello }]\n",
    )
    .unwrap();
    let (ok, stdout, stderr) = wasmgate(&[
        "plugin",
        "test",
        &built("plugins", "api-key"),
        cases.to_str().unwrap(),
    ]);
    assert!(!ok, "{stdout}");
    assert!(stdout.contains("PASS  good key\n"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "FAIL  no key  ({}:6)\n      respond.status:\n        - expected: 403\n        + actual:   401\n      logs:\n        - expected: *: \"hello\"\n        + actual:   (none)\n",
            cases.display()
        )),
        "{stdout}"
    );
    assert!(stdout.ends_with("\n1 passed, 1 failed\n"), "{stdout}");
    assert!(stderr.contains("1 of 2 cases failed"), "{stderr}");
}

/// The cases of every Proxy-Wasm test filter (`make proxywasm`), run
/// through the gateway's own loader: a core module is a filter.
#[test]
fn plugin_test_passes_the_cases_of_the_proxy_wasm_test_filters() {
    for (filter, cases) in [
        ("headers", 3),
        ("deny", 5),
        ("body-rewrite", 2),
        ("auth-call", 3),
        ("counter", 2),
        ("hostile", 5),
        ("metrics", 2),
    ] {
        let (ok, stdout, stderr) = wasmgate(&[
            "plugin",
            "test",
            &built("test-plugins", &format!("proxywasm-{filter}")),
            &repo_file(&format!("tests/proxy-wasm/{filter}/cases.yaml")),
        ]);
        assert!(ok, "{filter}: {stdout}{stderr}");
        assert!(
            stdout.ends_with(&format!("\n{cases} passed, 0 failed\n")),
            "{filter}: {stdout}"
        );
    }
}

#[test]
fn plugin_test_fails_a_failing_proxy_wasm_case() {
    let dir = tempfile::tempdir().unwrap();
    let cases = dir.path().join("cases.yaml");
    std::fs::write(
        &cases,
        "config: { upstream: idp, path: /verify }\ncases:\n  - name: the idp says no\n    upstreams: { idp: { status: 401 } }\n    expect:\n      continue: { headers: { append: { x-user: alice } } }\n",
    )
    .unwrap();
    let (ok, stdout, stderr) = wasmgate(&[
        "plugin",
        "test",
        &built("test-plugins", "proxywasm-auth-call"),
        cases.to_str().unwrap(),
    ]);
    assert!(!ok, "{stdout}");
    assert!(
        stdout.contains(&format!(
            "FAIL  the idp says no  ({}:3)\n      outcome:\n        - expected: continue\n        + actual:   respond 403,",
            cases.display()
        )),
        "{stdout}"
    );
    assert!(stdout.ends_with("\n0 passed, 1 failed\n"), "{stdout}");
    assert!(stderr.contains("1 of 1 cases failed"), "{stderr}");
}

#[test]
fn plugin_test_names_file_line_and_what_is_expected_in_a_bad_cases_file() {
    let dir = tempfile::tempdir().unwrap();
    let cases = dir.path().join("cases.yaml");
    let api_key = built("plugins", "api-key");
    let run = |text: &str| {
        std::fs::write(&cases, text).unwrap();
        wasmgate(&["plugin", "test", &api_key, cases.to_str().unwrap()])
    };
    let (ok, stdout, stderr) =
        run("cases:\n  - name: a\n    expect:\n      respond: { status: fourhundred }\n");
    assert!(!ok && stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains(&format!("error: {}:4: ", cases.display())),
        "{stderr}"
    );
    assert!(stderr.contains("expected u16"), "{stderr}");

    let (ok, _, stderr) =
        run("cases:\n  - name: a\n    expect: { continue: {} }\n  - name: b\n    reqest: {}\n");
    assert!(!ok);
    assert!(
        stderr.contains(&format!("error: {}:5: ", cases.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("unknown field `reqest`, expected one of"),
        "{stderr}"
    );
}

/// Where nested builds of scaffolded projects keep their artifacts across
/// runs, so only the first run compiles the SDK's dependencies.
fn scaffold_target_dir() -> std::path::PathBuf {
    let base = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo_file("target").into());
    base.join("scaffold-tests")
}

#[test]
fn plugin_new_rust_builds_and_passes_its_own_cases() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, stdout, stderr) = wasmgate(&[
        "plugin",
        "new",
        "hello-rs",
        "--lang",
        "rust",
        "--dir",
        dir.path().to_str().unwrap(),
        "--sdk-path",
        &repo_file("plugin-sdk"),
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("cargo build --release"), "{stdout}");
    let root = dir.path().join("hello-rs");
    // The workspace's lock file pins the SDK's dependencies to the tested
    // versions (and needs no registry index update).
    std::fs::copy(repo_file("Cargo.lock"), root.join("Cargo.lock")).unwrap();
    let target = scaffold_target_dir();
    let build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--quiet"])
        .current_dir(&root)
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .output()
        .expect("cargo runs");
    assert!(
        build.status.success(),
        "{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let wasm = target.join("wasm32-wasip2/release/hello_rs.wasm");
    assert_scaffold_cases_pass(&wasm, &root);
}

#[test]
fn plugin_new_refuses_a_bad_name_and_an_existing_folder() {
    let dir = tempfile::tempdir().unwrap();
    let at = dir.path().to_str().unwrap();
    let (ok, _, stderr) = wasmgate(&["plugin", "new", "Bad_Name", "--lang", "js", "--dir", at]);
    assert!(!ok);
    assert!(
        stderr.contains("plugin name `Bad_Name` must start with"),
        "{stderr}"
    );
    let (ok, _, stderr) = wasmgate(&["plugin", "new", "twice", "--lang", "python", "--dir", at]);
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = wasmgate(&["plugin", "new", "twice", "--lang", "python", "--dir", at]);
    assert!(!ok);
    assert!(stderr.contains("twice already exists"), "{stderr}");
}

/// `wasmgate plugin test` on a scaffold's build passes its three cases.
fn assert_scaffold_cases_pass(wasm: &Path, root: &Path) {
    let (ok, stdout, stderr) = wasmgate(&[
        "plugin",
        "test",
        wasm.to_str().unwrap(),
        root.join("cases.yaml").to_str().unwrap(),
    ]);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.ends_with("\n3 passed, 0 failed\n"), "{stdout}");
}

/// Scaffolds a JavaScript or Python plugin, builds it with its own
/// `build.sh` (which installs the pinned toolchain: npm, pip) and runs its
/// cases. Slow on the first run (toolchain download), like `make polyglot`.
fn scaffold_build_and_test(name: &str, lang: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, stderr) = wasmgate(&[
        "plugin",
        "new",
        name,
        "--lang",
        lang,
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let root = dir.path().join(name);
    let build = Command::new(root.join("build.sh"))
        .current_dir(&root)
        .env("PLUGIN_VENV", scaffold_target_dir().join("venv"))
        .output()
        .expect("build.sh runs");
    assert!(
        build.status.success(),
        "{}{}",
        String::from_utf8_lossy(&build.stdout),
        String::from_utf8_lossy(&build.stderr)
    );
    let wasm = root.join(format!("{name}.wasm"));
    assert_scaffold_cases_pass(&wasm, &root);
}

#[test]
fn plugin_new_js_builds_and_passes_its_own_cases() {
    scaffold_build_and_test("hello-js", "js");
}

#[test]
fn plugin_new_python_builds_and_passes_its_own_cases() {
    scaffold_build_and_test("hello-py", "python");
}

/// `wasmgate run --log-format json`: one JSON access-log line per request
/// with route, status, who answered, upstream target and trace id.
#[tokio::test(flavor = "multi_thread")]
async fn run_writes_a_json_access_log_line_per_request() {
    use std::io::BufRead;
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    tokio::spawn(wasmgate::devtools::demo::serve_echo(upstream, "u".into()));
    let dir = tempfile::tempdir().unwrap();
    let plugins = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/plugins");
    let file = dir.path().join("gw.yaml");
    std::fs::write(
        &file,
        format!("listeners: [{{ address: '127.0.0.1:0' }}]\nplugins: {{ dir: '{plugins}' }}\nupstreams:\n  u: {{ targets: ['{upstream_addr}'] }}\nroutes:\n  - name: keyed\n    upstream: u\n    plugins: [{{ name: api-key, config: {{ keys: [{{ key: key-number-1, consumer: c }}] }} }}]\n"),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_wasmgate"))
        .args(["--log-format", "json", "run", "--config"])
        .arg(&file)
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("wasmgate runs");
    let (lines, logged) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if let Ok(json) = serde_json::from_str::<serde_json::Value>(&line) {
                let _ = lines.send(json);
            }
        }
    });
    let next = |target: &str| loop {
        let line = logged
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("a log line in time");
        if line["target"] == target {
            return line;
        }
    };
    let started = next("wasmgate");
    let message = started["fields"]["message"].as_str().unwrap().to_string();
    let address = message
        .strip_prefix("wasmgate listening on http://")
        .unwrap_or_else(|| panic!("{message}"));

    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let get = |headers: &[(&str, &str)]| {
        let mut request = http::Request::get(format!("http://{address}/items?page=2"));
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        client.request(request.body(http_body_util::Empty::new()).unwrap())
    };
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{trace}-00f067aa0ba902b7-01");
    let ok = get(&[("x-api-key", "key-number-1"), ("traceparent", &traceparent)])
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let served = next("wasmgate::access");
    let denied = get(&[]).await.unwrap();
    assert_eq!(denied.status(), 401);
    let refused = next("wasmgate::access");
    let _ = child.kill();
    let _ = child.wait();

    let fields = &served["fields"];
    assert_eq!(served["level"], "INFO");
    assert_eq!(fields["route"], "keyed", "{served}");
    assert_eq!(fields["method"], "GET");
    assert_eq!(fields["path"], "/items");
    assert_eq!(fields["status"], 200);
    assert_eq!(fields["answered_by"], "upstream");
    assert_eq!(fields["upstream"], "u");
    assert_eq!(fields["upstream_target"], upstream_addr.to_string());
    assert_eq!(fields["trace_id"], trace);
    assert!(fields["duration_ms"].as_f64().is_some(), "{served}");
    assert!(!fields["request_id"].as_str().unwrap().is_empty());

    let fields = &refused["fields"];
    assert_eq!(fields["status"], 401, "{refused}");
    assert_eq!(fields["answered_by"], "plugin");
    assert_eq!(fields["plugin"], "api-key");
    assert_eq!(fields["trace_id"].as_str().unwrap().len(), 32);
    assert_ne!(fields["trace_id"], trace, "a new trace");
}

/// Runs `wasmgate run` (text logs, `RUST_LOG=rust_log`) on a one-route
/// config, sends one request that reaches the upstream and one that matches
/// no route, stops it with SIGTERM and returns every line it logged.
async fn run_two_requests(rust_log: &str) -> Vec<String> {
    use std::io::BufRead;
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    tokio::spawn(wasmgate::devtools::demo::serve_echo(upstream, "u".into()));
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("plugins")).unwrap();
    let file = dir.path().join("gw.yaml");
    std::fs::write(
        &file,
        format!("listeners: [{{ address: '127.0.0.1:0' }}]\nupstreams:\n  u: {{ targets: ['{upstream_addr}'] }}\nroutes:\n  - name: r\n    match: {{ path_prefix: /items }}\n    upstream: u\n"),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_wasmgate"))
        .args(["run", "--config"])
        .arg(&file)
        .env("RUST_LOG", rust_log)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("wasmgate runs");
    let (sender, logged) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = sender.send(line.clone());
            all.push(line);
        }
        all
    });
    let address = loop {
        let line = logged
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the listening line in time");
        if let Some((_, address)) = line.split_once("wasmgate listening on http://") {
            break address.to_string();
        }
    };
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    for (path, status) in [("/items/7?page=2", 200), ("/nowhere", 404)] {
        let response = client
            .get(format!("http://{address}{path}").parse().unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), status);
    }
    let stopped = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    assert!(child.wait().unwrap().success());
    reader.join().unwrap()
}

/// The text access line the binary writes (straight into its log buffer,
/// not through `tracing`'s formatter) has tracing's layout and fields.
#[tokio::test(flavor = "multi_thread")]
async fn run_writes_a_text_access_log_line_per_request() {
    let lines = run_two_requests("info").await;
    let access: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains(" wasmgate::access: "))
        .collect();
    assert_eq!(access.len(), 2, "{lines:#?}");
    let served = access[0];
    assert!(
        served.contains("  INFO wasmgate::access: GET /items/7 200 route=\"r\" method=GET path=\"/items/7\" status=200 duration_ms="),
        "{served}"
    );
    assert!(
        served.contains(" upstream=\"u\" upstream_target=127.0.0.1:")
            && served.contains(" answered_by=\"upstream\" plugin=\"\" client=127.0.0.1:"),
        "{served}"
    );
    assert!(
        access[1].contains("GET /nowhere 404 route=\"_unmatched\"")
            && access[1].contains("upstream_target= answered_by=\"gateway\""),
        "{}",
        access[1]
    );
    let stamp = &served[..27];
    assert!(
        stamp.len() == 27 && stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T',
        "{served}"
    );
}

/// `RUST_LOG` still turns the access log off when lines skip `tracing`.
#[tokio::test(flavor = "multi_thread")]
async fn rust_log_turns_the_access_log_off() {
    let lines = run_two_requests("info,wasmgate::access=off").await;
    assert!(
        lines.iter().any(|l| l.contains("shutting down")),
        "the rest of the log is there: {lines:#?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("wasmgate::access")),
        "{lines:#?}"
    );
}
