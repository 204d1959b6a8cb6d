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
