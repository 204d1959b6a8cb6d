//! Process limits. The open-file limit: the gateway raises its soft
//! `NOFILE` to the hard limit and clamps `max_connections` to what the
//! descriptors allow, so a burst of clients is served instead of meeting
//! `EMFILE` 502s. The address-space limit (`ulimit -v`): the plugin
//! instance pool reserves its address space at start, so
//! `plugins.max_instances` sizes it to fit.
//!
//! A process has one limit, so the gateway runs in a child process — this
//! test binary again, started through `prlimit` with the test's own name
//! and [`CHILD`] set — while the clients and the upstream stay here.

use crate::support::{read_raw_response, serve_gateway_as_child, Backend};
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// Set in the child to the directory holding its config; it writes its
/// listener's address to `address` there.
const CHILD: &str = "WASMGATE_E2E_DESCRIPTORS_CHILD";

/// Clients sent at once: more than 256 descriptors can serve two at a time.
const BURST: usize = 150;

#[tokio::test(flavor = "multi_thread")]
async fn under_a_low_open_file_limit_max_connections_is_clamped_with_a_warning_and_all_are_served()
{
    if let Ok(dir) = std::env::var(CHILD) {
        return serve_gateway_as_child(Path::new(&dir)).await;
    }
    let upstream = Backend::start("up").await;
    let child = GatewayProcess::spawn(
        "descriptors::under_a_low_open_file_limit_max_connections_is_clamped_with_a_warning_and_all_are_served",
        "--nofile=256:256",
        "limits: { max_connections: 10000 }",
        upstream.addr,
    )
    .await;
    assert_eq!(
        child.soft_nofile(),
        256,
        "no higher hard limit to raise it to"
    );
    let statuses = burst(child.addr).await;
    let log = child.stop();
    assert!(
        log.contains("limits.max_connections 10000 is more than the open-file limit allows")
            && log.contains("serves at most 64 connections")
            && log.contains("open-file limit 256"),
        "the clamp is logged with the configured value, the clamp and the limit:\n{log}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        BURST,
        "every client is served, none gets a 502: {statuses:?}\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_soft_open_file_limit_is_raised_to_the_hard_limit_at_start() {
    if let Ok(dir) = std::env::var(CHILD) {
        return serve_gateway_as_child(Path::new(&dir)).await;
    }
    let upstream = Backend::start("up").await;
    let child = GatewayProcess::spawn(
        "descriptors::the_soft_open_file_limit_is_raised_to_the_hard_limit_at_start",
        "--nofile=256:4096",
        "limits: { max_connections: 1000 }",
        upstream.addr,
    )
    .await;
    assert_eq!(child.soft_nofile(), 4096, "raised to the hard limit");
    let statuses = burst(child.addr).await;
    let log = child.stop();
    assert!(
        !log.contains("max_connections 1000 is more than"),
        "4096 descriptors allow 1000 connections: no clamp\n{log}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        BURST,
        "{statuses:?}\n{log}"
    );
}

/// Address space for the whole test process: a few instance slots fit,
/// the default thousand (~4 GiB each) do not.
const ADDRESS_SPACE: &str = "--as=34359738368";

#[tokio::test(flavor = "multi_thread")]
async fn under_an_address_space_limit_the_default_instance_pool_fails_at_start_naming_the_setting()
{
    if let Ok(dir) = std::env::var(CHILD) {
        return serve_gateway_as_child(Path::new(&dir)).await;
    }
    let upstream = Backend::start("up").await;
    let Err(log) = GatewayProcess::launch(
        "descriptors::under_an_address_space_limit_the_default_instance_pool_fails_at_start_naming_the_setting",
        ADDRESS_SPACE,
        "",
        upstream.addr,
    )
    .await
    else {
        panic!("1000 instance slots do not fit in 32 GiB of address space");
    };
    assert!(
        log.contains("plugins.max_instances 1000")
            && log.contains("lower it under an address-space limit"),
        "the start-up error says which setting to change:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn under_an_address_space_limit_a_small_max_instances_starts_and_serves() {
    if let Ok(dir) = std::env::var(CHILD) {
        return serve_gateway_as_child(Path::new(&dir)).await;
    }
    let upstream = Backend::start("up").await;
    let child = GatewayProcess::spawn(
        "descriptors::under_an_address_space_limit_a_small_max_instances_starts_and_serves",
        ADDRESS_SPACE,
        "plugins: { max_instances: 4 }",
        upstream.addr,
    )
    .await;
    let statuses = burst(child.addr).await;
    let log = child.stop();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        BURST,
        "{statuses:?}\n{log}"
    );
}

/// A gateway in a child process under `prlimit <limit>`.
struct GatewayProcess {
    child: Child,
    addr: SocketAddr,
    stderr: Option<std::thread::JoinHandle<String>>,
    _dir: tempfile::TempDir,
}

impl GatewayProcess {
    /// Starts `test` in the child under `limit` (a `prlimit` option), with
    /// `settings` (top-level YAML) added to a one-route config; panics with
    /// the child's log if it exits instead of listening.
    async fn spawn(
        test: &str,
        limit: &str,
        settings: &str,
        upstream: SocketAddr,
    ) -> GatewayProcess {
        match GatewayProcess::launch(test, limit, settings, upstream).await {
            Ok(process) => process,
            Err(log) => panic!("{log}"),
        }
    }

    /// As [`GatewayProcess::spawn`]; a child that exits before listening
    /// gives its exit status and log as the error.
    async fn launch(
        test: &str,
        limit: &str,
        settings: &str,
        upstream: SocketAddr,
    ) -> Result<GatewayProcess, String> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("plugins")).unwrap();
        let config = format!(
            "listeners:\n  - address: 127.0.0.1:0\n{settings}\nupstreams:\n  up: {{ targets: ['{upstream}'] }}\nroutes:\n  - name: r\n    upstream: up\n"
        );
        std::fs::write(dir.path().join("gateway.yaml"), config).unwrap();
        let mut child = Command::new("prlimit")
            .arg(limit)
            .arg("--")
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env(CHILD, dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("prlimit (util-linux) runs");
        let mut stderr = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let mut process = GatewayProcess {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            stderr: Some(stderr),
            _dir: dir,
        };
        process.addr = process.wait_for_address().await?;
        Ok(process)
    }

    async fn wait_for_address(&mut self) -> Result<SocketAddr, String> {
        let file: PathBuf = self._dir.path().join("addresses");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(text) = std::fs::read_to_string(&file) {
                return Ok(text.split(' ').next().unwrap().parse().unwrap());
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                let log = self.stderr.take().unwrap().join().unwrap();
                return Err(format!("the gateway process exited ({status}):\n{log}"));
            }
            assert!(
                Instant::now() < deadline,
                "the gateway process did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The soft `NOFILE` limit the child runs under now.
    fn soft_nofile(&self) -> u64 {
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", self.child.id())).unwrap();
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .expect("a NOFILE line");
        line.split_whitespace().nth(3).unwrap().parse().unwrap()
    }

    /// Ends the child; its log.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stderr.take().unwrap().join().unwrap()
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// [`BURST`] clients at once, each on its own connection (closed after its
/// answer) with a request the upstream holds for 200 ms; their statuses (0:
/// no answer).
async fn burst(addr: SocketAddr) -> Vec<u16> {
    let clients = (0..BURST).map(|i| async move {
        let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
            return 0;
        };
        let request = format!(
            "GET /{i} HTTP/1.1\r\nhost: gw\r\nx-echo-delay-ms: 200\r\nconnection: close\r\n\r\n"
        );
        if stream.write_all(request.as_bytes()).await.is_err() {
            return 0;
        }
        tokio::time::timeout(Duration::from_secs(30), read_raw_response(&mut stream))
            .await
            .ok()
            .flatten()
            .map_or(0, |(status, _)| status)
    });
    futures::future::join_all(clients).await
}
