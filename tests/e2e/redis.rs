//! Several gateways as one: the `kv` capability on a real `redis-server`
//! (the Debian package; `scripts/test-deps.sh` installs it), started by each
//! test on a free port without persistence and killed when the test ends.
//!
//! The kv contract runs against both backends; then three gateway
//! *processes* (this test binary again, run as [`gateway_child_process`])
//! share one Redis: a limit of N admits exactly N of a concurrent crowd
//! spread over all three, a response cached through one is a hit through
//! the others, and Redis stalled, killed and restarted under load costs no
//! crash, no request beyond `timeout_ms`, behaves per `on_kv_error`, and
//! recovers without a restart.

use crate::support::{get_client, install_plugin, metric_value, Backend, HttpClient, Reply};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmgate::config::RedisKvConfig;
use wasmgate::plugin::host::kv::{contract, MemoryKv, RedisKv};
use wasmgate::plugin::KvStore;

/// Set in a child to the directory holding its config; it writes its
/// listener and admin addresses to `addresses` there.
const CHILD: &str = "WASMGATE_E2E_REDIS_GATEWAY_CHILD";

/// `kv.redis.timeout_ms` of the gateways under test.
const TIMEOUT_MS: u64 = 200;

/// A `redis-server` of this test's own, on a free loopback port.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = RedisServer {
            port,
            child: None,
            dir: tempfile::tempdir().unwrap(),
        };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port, empty, and waits until it answers.
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs (scripts/test-deps.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn answers(&self) -> bool {
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut reply = [0; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }

    /// SIGKILL: the server is gone at once, its data with it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` (`STOP`, `CONT`) to the server: a stopped server
    /// accepts connections and answers nothing.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// The keys matching `pattern`, as `redis-cli --scan` lists them.
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let output = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "--scan", "--pattern", pattern])
            .output()
            .expect("redis-cli runs");
        String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn redis_config(url: String, key_prefix: &str) -> RedisKvConfig {
    RedisKvConfig {
        url,
        key_prefix: key_prefix.into(),
        timeout_ms: 1000,
        required_for_ready: false,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_kv_contract_holds_on_redis_as_in_memory() {
    let redis = RedisServer::start();
    let memory: Arc<dyn KvStore> = Arc::new(MemoryKv::default());
    contract::check_concurrent(memory, "contract").await;
    let shared: Arc<dyn KvStore> =
        Arc::new(RedisKv::new(&redis_config(redis.url(), "wasmgate:"), None).unwrap());
    contract::check_concurrent(shared.clone(), "contract").await;
    // The key layout: the prefix, then the namespaced key as the memory
    // store has it, nothing else.
    shared
        .set("plugin/a key", b"v".to_vec(), None)
        .await
        .unwrap();
    let raw = RedisKv::new(&redis_config(redis.url(), ""), None).unwrap();
    assert_eq!(
        raw.get("wasmgate:plugin/a key").await.unwrap(),
        Some(b"v".to_vec())
    );
    assert_eq!(redis.keys("*"), ["wasmgate:plugin/a key"]);
}

/// Not a test of its own: the entry point of a gateway child process (when
/// [`CHILD`] is set); otherwise it returns at once.
#[tokio::test(flavor = "multi_thread")]
async fn gateway_child_process() {
    let Ok(dir) = std::env::var(CHILD) else {
        return;
    };
    let dir = Path::new(&dir);
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
    let tmp = dir.join("addresses.tmp");
    let admin = gateway.admin_address.expect("admin listener");
    std::fs::write(&tmp, format!("{} {admin}", gateway.addresses[0])).unwrap();
    std::fs::rename(&tmp, dir.join("addresses")).unwrap();
    std::future::pending::<()>().await;
}

/// A gateway in a child process, its stderr collected as it comes.
struct GatewayProcess {
    child: Child,
    addr: SocketAddr,
    admin: SocketAddr,
    log: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl GatewayProcess {
    /// Starts a gateway whose config is a listener, an admin listener,
    /// `plugins:` with rate-limit and cache installed, and `rest`.
    async fn spawn(rest: &str) -> GatewayProcess {
        let dir = tempfile::tempdir().unwrap();
        let plugins = dir.path().join("plugins");
        std::fs::create_dir(&plugins).unwrap();
        for plugin in ["rate-limit", "cache"] {
            install_plugin(&plugins, &format!("{plugin}.wasm"), plugin);
        }
        // Every call of the crowd below gets a slot (the default cap of 64
        // calls in flight per entry would turn some into 500s).
        let config = format!(
            "listeners:\n  - address: 127.0.0.1:0\nadmin:\n  address: 127.0.0.1:0\nplugins:\n  dir: plugins\n  max_concurrent_calls: 1024\n  queue_timeout_ms: 10000\n{rest}"
        );
        std::fs::write(dir.path().join("gateway.yaml"), config).unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "redis::gateway_child_process",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut chunk = [0; 4096];
            loop {
                match stderr.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => sink
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&chunk[..n])),
                }
            }
        });
        let file = dir.path().join("addresses");
        let deadline = Instant::now() + Duration::from_secs(120);
        let text = loop {
            if let Ok(text) = std::fs::read_to_string(&file) {
                break text;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the gateway exited ({status}):\n{}", log.lock().unwrap());
            }
            assert!(Instant::now() < deadline, "the gateway did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let (addr, admin) = text.split_once(' ').unwrap();
        GatewayProcess {
            child,
            addr: addr.parse().unwrap(),
            admin: admin.parse().unwrap(),
            log,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Still running (not crashed).
    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    async fn metrics(&self) -> String {
        let reply = get_client()
            .get(&format!("http://{}/metrics", self.admin), &[])
            .await;
        String::from_utf8(reply.body.to_vec()).unwrap()
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Three gateways on `redis` (key prefix `prefix`) in front of `upstream`,
/// each with `routes` (YAML starting with `routes:`).
async fn three_gateways(
    redis: &RedisServer,
    prefix: &str,
    upstream: &Backend,
    routes: &str,
    required_for_ready: bool,
) -> Vec<GatewayProcess> {
    let config = format!(
        "kv:\n  backend: redis\n  redis:\n    url: {}\n    key_prefix: '{prefix}'\n    timeout_ms: {TIMEOUT_MS}\n    required_for_ready: {required_for_ready}\nupstreams:\n  up: {{ targets: ['{}'] }}\n{routes}",
        redis.url(),
        upstream.addr
    );
    // Started one after the other: each compiles its plugins, and the
    // machine may have two cores.
    let mut gateways = Vec::new();
    for _ in 0..3 {
        gateways.push(GatewayProcess::spawn(&config).await);
    }
    gateways
}

#[tokio::test(flavor = "multi_thread")]
async fn three_gateway_processes_on_one_redis_admit_exactly_n_of_a_shared_limit() {
    const BURST: usize = 60;
    const CLIENTS: usize = 150;
    let redis = RedisServer::start();
    let upstream = Backend::start("up").await;
    let gateways = three_gateways(
        &redis,
        "e2e-limit:",
        &upstream,
        &format!("routes:\n  - name: api\n    upstream: up\n    plugins:\n      - {{ name: rate-limit, allow: [kv], config: {{ rate: 1, period: 1h, burst: {BURST}, key: {{ source: header, name: x-bucket }} }} }}\n"),
        false,
    )
    .await;
    // Each client talks to one gateway (round robin), over its own
    // connection, warmed up on a bucket of its own first.
    let clients: Vec<(HttpClient, String)> = (0..CLIENTS)
        .map(|i| (get_client(), gateways[i % 3].url("/")))
        .collect();
    let warm = futures::future::join_all(clients.iter().enumerate().map(|(i, (c, url))| {
        let bucket = format!("warm-{i}");
        async move { c.get(url, &[("x-bucket", &bucket)]).await.status }
    }))
    .await;
    assert!(warm.iter().all(|s| *s == 200), "{warm:?}");
    for round in 0..2 {
        let bucket = format!("shared-{round}");
        let bucket = bucket.as_str();
        let replies: Vec<Reply> = futures::future::join_all(
            clients
                .iter()
                .map(|(c, url)| async move { c.get(url, &[("x-bucket", bucket)]).await }),
        )
        .await;
        let ok: Vec<&Reply> = replies.iter().filter(|r| r.status == 200).collect();
        let limited = replies.iter().filter(|r| r.status == 429).count();
        assert_eq!(
            (ok.len(), limited),
            (BURST, CLIENTS - BURST),
            "exactly the burst gets through, across all three: {:?}",
            replies.iter().map(|r| r.status).collect::<Vec<_>>()
        );
        let mut remaining: Vec<u64> = ok
            .iter()
            .map(|r| r.header("x-ratelimit-remaining").unwrap().parse().unwrap())
            .collect();
        remaining.sort();
        assert_eq!(
            remaining,
            (0..BURST as u64).collect::<Vec<_>>(),
            "each token handed out once, whichever gateway took it"
        );
    }
    // The buckets are in Redis, under the prefix and the plugin's namespace.
    let keys = redis.keys("e2e-limit:rate-limit/*");
    assert_eq!(keys.len(), CLIENTS + 2, "{keys:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_response_cached_through_one_gateway_is_a_hit_through_the_others() {
    let redis = RedisServer::start();
    let upstream = Backend::start("up").await;
    let gateways = three_gateways(
        &redis,
        "e2e-cache:",
        &upstream,
        "routes:\n  - name: pages\n    upstream: up\n    plugins:\n      - { name: cache, allow: [kv], config: { ttl_seconds: 60 } }\n",
        false,
    )
    .await;
    let client = get_client();
    let host = [("host", "api.example")];
    let first = client.get(&gateways[0].url("/page/1"), &host).await;
    assert_eq!((first.status, first.header("x-cache")), (200, Some("MISS")));
    assert_eq!(upstream.hits(), 1);
    for gateway in &gateways {
        let reply = client.get(&gateway.url("/page/1"), &host).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("x-cache"), Some("HIT"), "via {}", gateway.addr);
        assert_eq!(reply.body, first.body);
    }
    assert_eq!(
        upstream.hits(),
        1,
        "the upstream saw the first request only"
    );
    assert_eq!(redis.keys("e2e-cache:cache/*").len(), 1);
}

/// One request's outcome under load.
struct Sample {
    started: Instant,
    elapsed: Duration,
    path: &'static str,
    /// `None`: no answer (connection failed or reset).
    status: Option<u16>,
    code: Option<String>,
    cache: Option<String>,
}

/// Clients sending to every gateway and route in turn until `stop`.
fn load(
    gateways: &[GatewayProcess],
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<Sample>>> {
    const PATHS: [&str; 3] = ["/open", "/closed", "/cached"];
    let urls: Vec<String> = gateways.iter().map(|g| g.url("")).collect();
    (0..6)
        .map(|task| {
            let (urls, stop) = (urls.clone(), stop.clone());
            tokio::spawn(async move {
                let client = get_client();
                let mut samples = Vec::new();
                let mut i = task;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let path = PATHS[i % 3];
                    let url = format!("{}{path}", urls[(i / 3) % urls.len()]);
                    i += 1;
                    let started = Instant::now();
                    let reply = tokio::time::timeout(
                        Duration::from_secs(10),
                        client.send("GET", &url, &[("host", "api.example")], b""),
                    )
                    .await;
                    let reply = reply.ok().and_then(Result::ok);
                    samples.push(Sample {
                        started,
                        elapsed: started.elapsed(),
                        path,
                        status: reply.as_ref().map(|r| r.status),
                        code: reply.as_ref().and_then(|r| {
                            serde_json::from_slice::<serde_json::Value>(&r.body)
                                .ok()?
                                .get("code")?
                                .as_str()
                                .map(str::to_string)
                        }),
                        cache: reply
                            .as_ref()
                            .and_then(|r| r.header("x-cache").map(str::to_string)),
                    });
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                samples
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_stalled_then_killed_and_restarted_under_load_costs_no_crash_no_hang_and_heals() {
    let mut redis = RedisServer::start();
    let upstream = Backend::start("up").await;
    let routes = "routes:\n  - name: open\n    match: { path_prefix: /open }\n    upstream: up\n    plugins:\n      - { name: rate-limit, allow: [kv], config: { rate: 1000000, key: { source: route } } }\n  - name: closed\n    match: { path_prefix: /closed }\n    upstream: up\n    plugins:\n      - { name: rate-limit, allow: [kv], config: { rate: 1000000, key: { source: route }, on_kv_error: deny } }\n  - name: cached\n    match: { path_prefix: /cached }\n    upstream: up\n    plugins:\n      - { name: cache, allow: [kv], config: { ttl_seconds: 60 } }\n";
    let mut gateways = three_gateways(&redis, "e2e-outage:", &upstream, routes, true).await;
    let client = get_client();
    for gateway in &gateways {
        crate::support::eventually!(
            "readyz once Redis answers",
            client
                .get(&format!("http://{}/readyz", gateway.admin), &[])
                .await
                .status
                == 200
        );
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tasks = load(&gateways, stop.clone());
    tokio::time::sleep(Duration::from_millis(800)).await;
    // Redis stops answering (connections stay open): calls time out.
    let stalled = Instant::now();
    redis.signal("STOP");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    redis.signal("CONT");
    let resumed = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Redis dies (connections refused), then comes back empty.
    let killed = Instant::now();
    redis.kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for gateway in &gateways {
        let ready = client
            .get(&format!("http://{}/readyz", gateway.admin), &[])
            .await;
        assert_eq!(ready.status, 503, "required_for_ready: Redis is down");
        assert_eq!(ready.json()["kv"], "redis unreachable");
    }
    let restarted = Instant::now();
    redis.restart();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut samples = Vec::new();
    for task in tasks {
        samples.extend(task.await.unwrap());
    }

    for gateway in &mut gateways {
        assert!(gateway.alive(), "no gateway crashed:\n{}", gateway.log());
    }
    assert!(samples.len() > 100, "load ran: {}", samples.len());
    let unanswered = samples.iter().filter(|s| s.status.is_none()).count();
    assert_eq!(unanswered, 0, "every request was answered");
    // At most one kv call fails per hook (rate-limit stops at the first
    // error; cache does one lookup and one store): no request waits on
    // Redis longer than that, plus slack for a busy machine.
    let slack = Duration::from_millis(1000);
    for sample in &samples {
        let calls = if sample.path == "/cached" { 2 } else { 1 };
        let bound = Duration::from_millis(TIMEOUT_MS * calls) + slack;
        assert!(
            sample.elapsed <= bound,
            "{} took {:?} (bound {bound:?})",
            sample.path,
            sample.elapsed
        );
    }
    // While Redis is stalled or gone, each route does what its config says.
    let margin = Duration::from_millis(TIMEOUT_MS + 300);
    let outage = |s: &&Sample| {
        (s.started > stalled + margin && s.started + s.elapsed < resumed)
            || (s.started > killed + margin && s.started + s.elapsed < restarted)
    };
    let during: Vec<&Sample> = samples.iter().filter(outage).collect();
    for path in ["/open", "/closed", "/cached"] {
        assert!(
            during.iter().any(|s| s.path == path),
            "{path} was requested during the outages"
        );
    }
    for sample in &during {
        match sample.path {
            "/open" => assert_eq!(sample.status, Some(200), "on_kv_error allow"),
            "/closed" => {
                assert_eq!(sample.status, Some(503), "on_kv_error deny");
                assert_eq!(sample.code.as_deref(), Some("rate_limit_unavailable"));
            }
            _ => {
                assert_eq!(sample.status, Some(200), "cache misses to the upstream");
                assert_eq!(sample.cache.as_deref(), Some("MISS"));
            }
        }
    }
    // Healthy before, healed after: without a restart of any gateway.
    let healthy: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.started + s.elapsed < stalled || s.started > restarted + slack)
        .collect();
    assert!(healthy.iter().any(|s| s.started > restarted + slack));
    for sample in healthy.iter().filter(|s| s.path != "/cached") {
        assert_eq!(
            sample.status,
            Some(200),
            "{} while Redis is up",
            sample.path
        );
    }
    for gateway in &gateways {
        assert_eq!(
            client.get(&gateway.url("/closed"), &[]).await.status,
            200,
            "healed"
        );
        let cached = client
            .get(&gateway.url("/cached/after"), &[("host", "api.example")])
            .await;
        assert_eq!(cached.status, 200);
        assert_eq!(
            client
                .get(&format!("http://{}/readyz", gateway.admin), &[])
                .await
                .status,
            200
        );
    }
    let hit = client
        .get(
            &gateways[0].url("/cached/after"),
            &[("host", "api.example")],
        )
        .await;
    assert_eq!(hit.header("x-cache"), Some("HIT"), "the cache works again");
    // Each gateway logged each outage once, not once per failed call, and
    // counted the failures.
    for gateway in &gateways {
        let log = gateway.log();
        let count = |text: &str| log.matches(text).count();
        assert_eq!(count("kv: redis is unreachable"), 2, "{log}");
        assert_eq!(count("kv: redis is reachable again"), 2, "{log}");
        let metrics = gateway.metrics().await;
        assert_eq!(
            metric_value(&metrics, "wasmgate_kv_redis_up", &[]),
            Some(1.0)
        );
        let errors = |op, reason| {
            metric_value(
                &metrics,
                "wasmgate_kv_redis_errors_total",
                &[("op", op), ("reason", reason)],
            )
            .unwrap_or(0.0)
        };
        assert!(errors("ping", "timeout") >= 1.0, "{metrics}");
        assert!(
            errors("get", "timeout") + errors("get", "unavailable") >= 1.0,
            "{metrics}"
        );
        assert!(metrics.contains("wasmgate_kv_redis_call_duration_seconds_bucket{op=\"get\""));
    }
}
