//! Starting a gateway against echo upstreams in a temp dir, and a small client.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmgate::RunningGateway;

/// A gateway running from a config in its own temp dir (with its own copy of
/// the plugins, so a test may overwrite them), plus its echo upstreams.
pub struct TestGateway {
    pub gateway: RunningGateway,
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    _upstreams: Vec<tokio::task::JoinHandle<()>>,
}

/// Where `make plugins` put a built plugin: built-ins in `target/plugins`,
/// test plugins in `target/test-plugins`.
pub fn built_plugin(file: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for dir in ["target/plugins", "target/test-plugins"] {
        let path = root.join(dir).join(file);
        if path.exists() {
            return path;
        }
    }
    panic!("{file} not built: run `make plugins` (or `make test`) first");
}

/// A plugin written in another language, as `make polyglot` built it into
/// `target/plugins-polyglot` (see `examples/plugins/`).
pub fn polyglot_plugin(file: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/plugins-polyglot")
        .join(file);
    assert!(
        path.exists(),
        "{} not built: run `make polyglot` (or `make test`) first",
        path.display()
    );
    path
}

/// Names of every built-in plugin `make plugins` built.
pub fn builtin_plugins() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugins");
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}: run `make plugins` first", dir.display()));
    entries
        .filter_map(|e| {
            let path = e.ok()?.path();
            (path.extension()? == "wasm").then(|| path.file_stem()?.to_str().map(str::to_string))?
        })
        .collect()
}

/// Starts an echo upstream named `name` on a free port.
pub async fn echo_upstream(name: &str) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (
        addr,
        tokio::spawn(wasmgate::devtools::demo::serve_echo(
            listener,
            name.to_string(),
        )),
    )
}

/// Copies a plugin into the dir atomically (write aside, rename into place),
/// as a deploy tool would.
pub fn install_plugin(plugins_dir: &Path, source_file: &str, name: &str) {
    let tmp = plugins_dir.join(format!(".{name}.tmp"));
    std::fs::copy(built_plugin(source_file), &tmp).unwrap();
    std::fs::rename(&tmp, plugins_dir.join(format!("{name}.wasm"))).unwrap();
}

impl TestGateway {
    /// Starts a gateway whose config is `routes_yaml` (the `routes:` and
    /// anything after it). Upstreams `a` and `b` are echo servers; `slow` is
    /// `a` with a 300 ms timeout; `dead` points at a closed port. The test
    /// plugins `probe` and `probe-caps` (the build importing kv and outbound)
    /// and every built-in plugin are installed.
    pub async fn start(routes_yaml: &str) -> TestGateway {
        Self::start_with(routes_yaml, "").await
    }

    /// As [`start`], with extra top-level `plugins:` settings lines.
    pub async fn start_with(routes_yaml: &str, plugin_settings: &str) -> TestGateway {
        Self::start_with_plugins(routes_yaml, plugin_settings, &[]).await
    }

    /// As [`start_with`], also installing `extra` plugin files under their
    /// names (e.g. [`polyglot_plugin`]s, which are too big to install always).
    pub async fn start_with_plugins(
        routes_yaml: &str,
        plugin_settings: &str,
        extra: &[(PathBuf, &str)],
    ) -> TestGateway {
        Self::start_opts(
            routes_yaml,
            GatewayOptions {
                plugin_settings,
                extra_plugins: extra,
                ..GatewayOptions::default()
            },
        )
        .await
    }

    /// As [`start`], with the extra config of `options`.
    pub async fn start_opts(routes_yaml: &str, options: GatewayOptions<'_>) -> TestGateway {
        let GatewayOptions {
            plugin_settings,
            listener,
            upstreams,
            extra_plugins: extra,
        } = options;
        let dir = tempfile::tempdir().unwrap();
        let plugins = dir.path().join("plugins");
        std::fs::create_dir(&plugins).unwrap();
        install_plugin(&plugins, "probe.wasm", "probe");
        install_plugin(&plugins, "probe-caps.wasm", "probe-caps");
        for (file, name) in extra {
            std::fs::copy(file, plugins.join(format!("{name}.wasm"))).unwrap();
        }
        for builtin in builtin_plugins() {
            install_plugin(&plugins, &format!("{builtin}.wasm"), &builtin);
        }
        let (a, ta) = echo_upstream("a").await;
        let (b, tb) = echo_upstream("b").await;
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let config = format!(
            "listeners:\n  - address: 127.0.0.1:0\n{listener}plugins:\n  dir: plugins\n{plugin_settings}\nupstreams:\n  a: {{ targets: ['{a}'] }}\n  b: {{ targets: ['{b}'] }}\n  slow: {{ targets: ['{a}'], timeout_ms: 300 }}\n  dead: {{ targets: ['{dead}'] }}\n{upstreams}{routes_yaml}"
        );
        let config_path = dir.path().join("gateway.yaml");
        std::fs::write(&config_path, config).unwrap();
        capture_gateway_log();
        let gateway = wasmgate::start(&config_path).await.expect("gateway starts");
        let addr = gateway.addresses[0];
        TestGateway {
            gateway,
            dir,
            addr,
            _upstreams: vec![ta, tb],
        }
    }

    /// Starts a gateway whose config is the listener, an empty plugins dir
    /// and `yaml` (its own `upstreams:`, `routes:`, maybe `admin:`), for
    /// tests that bring their own upstreams (e.g. [`Backend`]s).
    pub async fn start_config(yaml: &str) -> TestGateway {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("plugins")).unwrap();
        let config =
            format!("listeners:\n  - address: 127.0.0.1:0\nplugins:\n  dir: plugins\n{yaml}");
        let config_path = dir.path().join("gateway.yaml");
        std::fs::write(&config_path, config).unwrap();
        capture_gateway_log();
        let gateway = wasmgate::start(&config_path).await.expect("gateway starts");
        let addr = gateway.addresses[0];
        TestGateway {
            gateway,
            dir,
            addr,
            _upstreams: Vec::new(),
        }
    }

    /// `http://<admin address><path>`; panics without an admin listener.
    pub fn admin_url(&self, path: &str) -> String {
        let admin = self.gateway.admin_address.expect("admin listener bound");
        format!("http://{admin}{path}")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("gateway.yaml")
    }

    pub fn plugins_dir(&self) -> PathBuf {
        self.dir.path().join("plugins")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Waits until a reload attempt beyond the first `seen` is recorded.
    pub async fn next_reload_event(&self, seen: usize) -> wasmgate::reload::ReloadEvent {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let events = self.gateway.reload_events();
            if events.len() > seen {
                return events[seen].clone();
            }
            assert!(Instant::now() < deadline, "no reload event within 10s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The log output of every gateway this test binary ran so far, as
/// `wasmgate run` writes it to stderr: its warnings and errors (`tracing`,
/// without colours), and the report of every panic raised outside the
/// tests' own code (`thread '…' panicked at host/src/…`). Captured from the
/// first gateway a test starts; gateways run in this process, so a panic in
/// one lands here whichever test caused it.
pub fn gateway_log() -> String {
    String::from_utf8_lossy(&GATEWAY_LOG.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
}

/// What [`gateway_log`] holds, up to [`GATEWAY_LOG_CAP`] bytes of log lines
/// (panic reports always).
static GATEWAY_LOG: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());
const GATEWAY_LOG_CAP: usize = 64 << 20;

struct GatewayLogWriter;

impl std::io::Write for GatewayLogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut log = GATEWAY_LOG.lock().unwrap_or_else(|e| e.into_inner());
        if log.len() + buf.len() <= GATEWAY_LOG_CAP {
            log.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs (once per process) the `tracing` subscriber and the panic hook
/// that feed [`gateway_log`]; the previous panic hook still runs.
pub fn capture_gateway_log() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
            .with_ansi(false)
            .with_writer(|| GatewayLogWriter)
            .try_init();
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let location = info.location();
            // A failing assertion in a test is the test's own report, not the gateway's.
            if !location.is_some_and(|l| l.file().starts_with("tests/")) {
                let thread = std::thread::current();
                let message = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                let location = location.map(|l| l.to_string()).unwrap_or_default();
                let report = format!(
                    "thread '{}' panicked at {location}:\n{message}\n",
                    thread.name().unwrap_or("<unnamed>")
                );
                GATEWAY_LOG
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend_from_slice(report.as_bytes());
            }
            previous(info);
        }));
    });
}

/// Extra config for [`TestGateway::start_opts`]; each is YAML text ending in a newline.
#[derive(Default)]
pub struct GatewayOptions<'a> {
    /// Lines of the top-level `plugins:` settings.
    pub plugin_settings: &'a str,
    /// Lines under the (only) listener, indented by four spaces (e.g. `    tls: ...`).
    pub listener: &'a str,
    /// More `upstreams:` entries, indented by two spaces.
    pub upstreams: &'a str,
    /// Plugin files installed under these names, besides the built-ins and `probe`.
    pub extra_plugins: &'a [(PathBuf, &'a str)],
}

/// A response read to the end.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// What the echo upstream saw of header `name`.
    pub fn upstream_header(&self, name: &str) -> Option<String> {
        self.json()["headers"][name].as_str().map(str::to_string)
    }
}

/// A real HTTP client: HTTP/1.1 by default, h2c with prior knowledge on request.
#[derive(Clone)]
pub struct HttpClient(Client<HttpConnector, Full<Bytes>>);

impl HttpClient {
    pub fn http1() -> HttpClient {
        HttpClient(Client::builder(TokioExecutor::new()).build_http())
    }

    pub fn h2c() -> HttpClient {
        HttpClient(
            Client::builder(TokioExecutor::new())
                .http2_only(true)
                .build_http(),
        )
    }

    pub async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Reply, String> {
        let mut request = http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let request = request
            .body(Full::new(Bytes::copy_from_slice(body)))
            .unwrap();
        let response = self.0.request(request).await.map_err(|e| e.to_string())?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    }

    pub async fn get(&self, url: &str, headers: &[(&str, &str)]) -> Reply {
        self.send("GET", url, headers, b"")
            .await
            .expect("request completes")
    }
}

pub fn get_client() -> HttpClient {
    HttpClient::http1()
}

/// The admin listener's `/metrics` text.
/// The `/admin/plugins` entry of `plugin`.
pub async fn admin_plugin(gw: &TestGateway, plugin: &str) -> serde_json::Value {
    let plugins = get_client()
        .get(&gw.admin_url("/admin/plugins"), &[])
        .await
        .json();
    let found = plugins
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == plugin)
        .unwrap_or_else(|| panic!("{plugin} in {plugins}"));
    found.clone()
}

/// The compiler tier (`baseline`, `optimized`) `plugin` is served from,
/// as the admin API reports it.
pub async fn plugin_tier(gw: &TestGateway, plugin: &str) -> serde_json::Value {
    admin_plugin(gw, plugin).await["tier"].clone()
}

pub async fn scrape_metrics(gw: &TestGateway) -> String {
    let admin = gw.gateway.admin_address.expect("admin listener bound");
    let reply = get_client()
        .get(&format!("http://{admin}/metrics"), &[])
        .await;
    assert_eq!(reply.status, 200);
    String::from_utf8(reply.body.to_vec()).expect("metrics are text")
}

/// The value of series `name{labels}` in Prometheus text (labels in any order).
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut sorted = labels.to_vec();
    sorted.sort();
    let labels = sorted
        .iter()
        .map(|(k, v)| format!("{k}=\"{v}\""))
        .collect::<Vec<_>>()
        .join(",");
    let series = if labels.is_empty() {
        format!("{name} ")
    } else {
        format!("{name}{{{labels}}} ")
    };
    text.lines()
        .find_map(|line| line.strip_prefix(&series))
        .map(|value| value.trim().parse().expect("a numeric sample"))
}

/// One HTTP/1.1 response read off a raw socket: status and body (by
/// `Content-Length`). `None` if the connection closed before a whole head.
pub async fn read_raw_response<S>(stream: &mut S) -> Option<(u16, String)>
where
    S: tokio::io::AsyncRead + Unpin,
{
    use tokio::io::AsyncReadExt;
    let mut data = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => data.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).to_string();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    while data.len() < head_end + length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => data.extend_from_slice(&chunk[..n]),
        }
    }
    let body = String::from_utf8_lossy(&data[head_end..head_end + length]).to_string();
    Some((status, body))
}

/// Resolves once the peer closes `stream` (EOF or reset), discarding
/// anything it sends first; wrap it in a timeout.
pub async fn closed_by_peer<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) {
    use tokio::io::AsyncReadExt;
    let mut chunk = [0u8; 4096];
    while let Ok(1..) = stream.read(&mut chunk).await {}
}

/// An upstream a test controls: it counts the connections it accepts and
/// the requests it gets, answers with the status it is told
/// (`x-echo-delay-ms` delays it), serves health probes on `GET /health`,
/// speaks HTTP/1.1 and h2c, and can be stopped and started on the same port.
pub struct Backend {
    pub addr: SocketAddr,
    name: String,
    state: Arc<BackendState>,
    server: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

#[derive(Default)]
struct BackendState {
    connections: AtomicUsize,
    hits: AtomicUsize,
    checks: AtomicUsize,
    /// Status of ordinary requests (0 = 200).
    status: AtomicU16,
    /// Status of `GET /health` (0 = 200).
    check_status: AtomicU16,
}

impl Backend {
    /// A backend named `name` answering 200 on a free port.
    pub async fn start(name: &str) -> Backend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let backend = Backend {
            addr: listener.local_addr().unwrap(),
            name: name.to_string(),
            state: Arc::default(),
            server: std::sync::Mutex::new(None),
        };
        backend.serve(listener);
        backend
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let task = tokio::spawn(serve_backend(
            listener,
            self.name.clone(),
            self.state.clone(),
        ));
        *self.server.lock().unwrap() = Some(task);
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Ordinary (non-health) requests received so far.
    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    /// Health probes received so far.
    pub fn checks(&self) -> usize {
        self.state.checks.load(Ordering::SeqCst)
    }

    /// Answers ordinary requests with `status` from now on.
    pub fn set_status(&self, status: u16) {
        self.state.status.store(status, Ordering::SeqCst);
    }

    /// Answers health probes with `status` from now on.
    pub fn set_check_status(&self, status: u16) {
        self.state.check_status.store(status, Ordering::SeqCst);
    }

    /// Closes the listener and every open connection: connects are refused.
    pub async fn stop(&self) {
        let task = self.server.lock().unwrap().take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }

    /// Listens again on the same port.
    pub async fn restart(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => panic!("cannot rebind {}: {e}", self.addr),
            }
        };
        self.serve(listener);
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(task) = self.server.lock().unwrap().take() {
            task.abort();
        }
    }
}

async fn serve_backend(listener: tokio::net::TcpListener, name: String, state: Arc<BackendState>) {
    // Connections live in this set so aborting the server closes them too.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        state.connections.fetch_add(1, Ordering::SeqCst);
        while connections.try_join_next().is_some() {}
        let (name, state) = (name.clone(), state.clone());
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let (name, state) = (name.clone(), state.clone());
                async move {
                    Ok::<_, std::convert::Infallible>(backend_answer(&name, &state, request).await)
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn backend_answer(
    name: &str,
    state: &BackendState,
    request: http::Request<hyper::body::Incoming>,
) -> http::Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let status = if parts.uri.path() == "/health" {
        state.checks.fetch_add(1, Ordering::SeqCst);
        state.check_status.load(Ordering::SeqCst)
    } else {
        state.hits.fetch_add(1, Ordering::SeqCst);
        state.status.load(Ordering::SeqCst)
    };
    let delay = parts
        .headers
        .get("x-echo-delay-ms")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    if let Some(ms) = delay {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let reply = serde_json::json!({
        "upstream": name,
        "method": parts.method.as_str(),
        "body": String::from_utf8_lossy(&body),
    });
    http::Response::builder()
        .status(if status == 0 { 200 } else { status })
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(reply.to_string())))
        .unwrap()
}

/// Polls the condition (an expression that may `.await`) every 10 ms until
/// it holds; panics after 5 s naming `what`.
macro_rules! eventually {
    ($what:expr, $condition:expr) => {{
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !($condition) {
            assert!(
                std::time::Instant::now() < deadline,
                "not within 5 s: {}",
                $what
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }};
}
pub(crate) use eventually;

/// The child's part of a gateway run as a child process of this test
/// binary (`descriptors`, `redis`): runs the gateway from `dir/gateway.yaml`
/// until the parent closes our stdin, and once listening writes
/// `dir/addresses` as `<listener> <admin or ->`, renamed into place whole.
pub async fn serve_gateway_as_child(dir: &Path) {
    use std::io::Read;
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .try_init();
    // The parent holds our stdin: its end (or death) ends us.
    std::thread::spawn(|| {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        std::process::exit(0);
    });
    let gateway = wasmgate::start(&dir.join("gateway.yaml"))
        .await
        .expect("gateway starts");
    let admin = gateway
        .admin_address
        .map_or_else(|| "-".to_string(), |a| a.to_string());
    let tmp = dir.join("addresses.tmp");
    std::fs::write(&tmp, format!("{} {admin}", gateway.addresses[0])).unwrap();
    std::fs::rename(&tmp, dir.join("addresses")).unwrap();
    std::future::pending::<()>().await;
}
