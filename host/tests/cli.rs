//! The `wasmgate` binary's exit codes and messages, run as a user would.

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
fn inspect_json_lists_every_capability_the_probe_imports() {
    let (ok, stdout, stderr) = wasmgate(&[
        "plugin",
        "inspect",
        "--json",
        &built("test-plugins", "probe"),
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
