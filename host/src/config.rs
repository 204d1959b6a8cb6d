//! The gateway's YAML config: what it may contain, and how a bad one is reported.
//!
//! Every struct denies unknown fields so a typo is an error, not a silent
//! default. Errors carry the file and the line they point at, so
//! `wasmgate validate` can say exactly where a config is wrong.

mod export;
mod isolation;
pub mod locate;
mod resilience;
pub mod yaml_file;

pub use export::{OtlpConfig, TracingConfig};
pub use isolation::{FaultBreakerConfig, KvBackend, KvConfig, RedisKvConfig};
pub use resilience::{
    BalanceStrategy, CircuitBreakerConfig, HealthCheckConfig, PassiveHealthConfig,
    RetryBudgetConfig, RetryConfig, TargetConfig,
};

pub use locate::FieldPath;
use yaml_file::YamlText;

use crate::http::path::{PathPolicy, PathPolicyOverride};
use crate::plugin::grants::{BadGrant, Grants};
pub use crate::tls::config::{
    CertificateConfig, ClientAuthConfig, ListenerTlsConfig, UpstreamProtocol, UpstreamTlsConfig,
};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// A config that could not be read or is not valid.
pub type ConfigError = yaml_file::YamlFileError;

/// The whole config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where clients connect.
    pub listeners: Vec<ListenerConfig>,
    /// The operators' listener: metrics, health, routes and plugin status.
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// Where plugins come from and the limits every plugin call runs under.
    #[serde(default)]
    pub plugins: PluginSettings,
    /// Named groups of upstream servers.
    #[serde(default)]
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    /// Routes; the most specific match wins, ties go to the first listed.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Connection and request limits every listener enforces.
    #[serde(default)]
    pub limits: Limits,
    /// Trace export; none by default.
    #[serde(default)]
    pub tracing: TracingConfig,
    /// How every listener canonicalises request paths before routing
    /// (see [`crate::http::path`]); a listener or route may override a field.
    #[serde(default)]
    pub paths: PathPolicy,
    /// Request headers removed from every client request, on every route,
    /// before routing, so a client cannot forge what a plugin tells the
    /// upstream about identity. Unset: every identity header a configured
    /// plugin entry writes (see [`crate::http::identity_headers`]); `[]` strips
    /// nothing.
    #[serde(default)]
    pub strip_request_headers: Option<Vec<String>>,
    /// The kv store plugins share: in memory (the default) or Redis (read
    /// at start: a change takes effect on restart).
    #[serde(default)]
    pub kv: KvConfig,
    /// Directory the config file lives in; relative paths resolve against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// One listening socket.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// `ip:port` to bind, e.g. `127.0.0.1:8080` (port 0 picks a free port).
    pub address: SocketAddr,
    /// TLS termination; plain HTTP (and h2c) when absent.
    #[serde(default)]
    pub tls: Option<ListenerTlsConfig>,
    /// Overrides of the top-level `paths:` for this listener.
    #[serde(default)]
    pub paths: PathPolicyOverride,
}

/// The admin listener; keep it on a private address.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// `ip:port` to bind, e.g. `127.0.0.1:9901`.
    pub address: SocketAddr,
    /// When set, every admin endpoint but `/healthz` and `/readyz` needs
    /// `Authorization: Bearer <token>`: for an admin listener that cannot
    /// be kept on loopback or a private network alone.
    #[serde(default)]
    pub token: Option<String>,
}

/// The most `plugins.max_instances` may be: each instance reserves ~4 GiB
/// of address space, and x86-64 user space is 128 TiB.
pub const MAX_PLUGIN_INSTANCES: u32 = 10_000;

/// Plugin loading and per-call limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginSettings {
    /// Directory holding `<name>.wasm` files; watched for changes.
    pub dir: PathBuf,
    /// Wall-clock budget of one plugin call before it is interrupted.
    pub call_timeout_ms: u64,
    /// Linear-memory cap of one plugin instance.
    pub memory_limit_mb: u64,
    /// Warm instances kept per route entry.
    pub max_idle_instances: usize,
    /// Serve a hot-reloaded file from its baseline (Winch) build until the
    /// optimized one is ready; `false` waits for the optimized build.
    pub fast_reload: bool,
    /// Calls one route entry may have in flight; an entry may override it.
    pub max_concurrent_calls: usize,
    /// How long a call beyond `max_concurrent_calls` waits for a slot before
    /// it is answered per the entry's `on_error`.
    pub queue_timeout_ms: u64,
    /// When a faulting entry is skipped; an entry may override it.
    pub fault_breaker: FaultBreakerConfig,
    /// Plugin instances that may exist at once across all route entries
    /// (warm and in flight); beyond it a request's instantiation fails, not
    /// the gateway. Each reserves address space up front (~4 GiB of linear
    /// memory), so a process under an address-space limit (`ulimit -v`,
    /// valgrind) needs it small. Read at start: a change takes effect on restart.
    pub max_instances: u32,
}

impl Default for PluginSettings {
    fn default() -> Self {
        PluginSettings {
            dir: PathBuf::from("plugins"),
            call_timeout_ms: 100,
            memory_limit_mb: 64,
            max_idle_instances: 64,
            fast_reload: true,
            max_concurrent_calls: 64,
            queue_timeout_ms: 50,
            fault_breaker: FaultBreakerConfig::default(),
            max_instances: crate::plugin::component::runtime::DEFAULT_MAX_INSTANCES,
        }
    }
}

/// Connection and request limits: what keeps one client (or a slowloris
/// attack) from starving the others. Every field has a safe default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request head (request line and headers); 431 beyond. At least 8192.
    pub max_header_bytes: usize,
    /// Largest request body of a route without its own `max_body_bytes`; 413 beyond.
    pub max_body_bytes: usize,
    /// Largest upstream response body a route buffers for its plugins
    /// (unless it sets its own); 502 beyond, since the upstream sent it.
    /// Streamed responses are not limited.
    pub max_response_body_bytes: usize,
    /// Time a client has to send a whole request head before its connection
    /// is closed (slowloris guard). HTTP/1.1 keep-alive waits count too.
    pub header_read_timeout_ms: u64,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout_ms: u64,
    /// Connections each listener serves at once; more wait in the accept
    /// backlog. Clamped at start to what the open-file limit allows (see
    /// [`crate::http::descriptors`]). A WebSocket tunnel counts until it closes.
    pub max_connections: usize,
    /// Time a request body of a route without its own `body_read_timeout_ms`
    /// has to arrive whole, counted from its request head; 408 beyond.
    pub body_read_timeout_ms: u64,
    /// A WebSocket tunnel with no byte in either direction for this long is
    /// closed (both sides).
    pub tunnel_idle_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 64 * 1024,
            max_body_bytes: 1024 * 1024,
            max_response_body_bytes: 10 * 1024 * 1024,
            header_read_timeout_ms: 15_000,
            idle_timeout_ms: 60_000,
            max_connections: 10_000,
            body_read_timeout_ms: 30_000,
            tunnel_idle_timeout_ms: 300_000,
        }
    }
}

/// The smallest `max_header_bytes` hyper's HTTP/1 parser accepts.
pub const MIN_HEADER_BYTES: usize = 8192;

/// A named group of interchangeable servers and how to call them
/// (see [`resilience`] for balancing, health, breaker and retries).
/// Compared on reload: an unchanged upstream keeps its state.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Each server: `host:port` or `{ address: host:port, weight: N }`.
    pub targets: Vec<TargetConfig>,
    /// Whole-request timeout (connect to last response header, retries
    /// included); 504 when hit. A route may override it.
    #[serde(default = "default_upstream_timeout_ms")]
    pub timeout_ms: u64,
    /// TCP connect timeout per attempt; a route may override it.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// How targets are picked; a route may override it.
    #[serde(default)]
    pub balance: BalanceStrategy,
    /// Active health checks; none by default.
    #[serde(default)]
    pub health_check: Option<HealthCheckConfig>,
    /// Ejection of targets whose requests keep failing; none by default.
    #[serde(default)]
    pub passive_health: Option<PassiveHealthConfig>,
    /// Fail fast with 503 while the upstream keeps failing; none by default.
    #[serde(default)]
    pub circuit_breaker: Option<CircuitBreakerConfig>,
    /// Cap on the retries routes send here.
    #[serde(default)]
    pub retry_budget: RetryBudgetConfig,
    /// Connect over https; plain HTTP when absent.
    #[serde(default)]
    pub tls: Option<UpstreamTlsConfig>,
    /// HTTP version spoken to the targets: `http1` (default) or `h2`.
    #[serde(default)]
    pub protocol: UpstreamProtocol,
}

fn default_upstream_timeout_ms() -> u64 {
    30_000
}

fn default_connect_timeout_ms() -> u64 {
    5_000
}

/// A route: what it matches, where it goes, and the plugins it runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Unique name; shown in logs and passed to plugins.
    pub name: String,
    #[serde(rename = "match", default)]
    pub matcher: MatchConfig,
    /// Name of the upstream requests are sent to.
    pub upstream: String,
    /// Largest request body; 413 beyond. Defaults to `limits.max_body_bytes`.
    #[serde(default)]
    pub max_body_bytes: Option<usize>,
    /// Time the request body has to arrive whole, from its request head;
    /// 408 beyond. Defaults to `limits.body_read_timeout_ms`.
    #[serde(default)]
    pub body_read_timeout_ms: Option<u64>,
    /// Largest upstream response body buffered for a plugin; 502 beyond.
    /// Defaults to `limits.max_response_body_bytes`.
    #[serde(default)]
    pub max_response_body_bytes: Option<usize>,
    /// The ordered plugin chain.
    #[serde(default)]
    pub plugins: Vec<PluginEntry>,
    /// Overrides the upstream's `balance` for this route.
    #[serde(default)]
    pub balance: Option<BalanceStrategy>,
    /// Overrides the upstream's whole-request `timeout_ms` for this route.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Overrides the upstream's `connect_timeout_ms` for this route.
    #[serde(default)]
    pub connect_timeout_ms: Option<u64>,
    /// Retries on connect failure and (idempotent methods) 5xx; none by default.
    #[serde(default)]
    pub retries: Option<RetryConfig>,
    /// Overrides of its listener's `paths:` policy for this route.
    #[serde(default)]
    pub paths: PathPolicyOverride,
}

/// What a request must look like for a route to match. Empty matches everything.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// Exact `Host` (port ignored).
    pub host: Option<String>,
    /// Exact path.
    pub path: Option<String>,
    /// Path prefix, matched on segment boundaries when it ends without `/`.
    pub path_prefix: Option<String>,
    /// Allowed methods (any if empty).
    #[serde(default)]
    pub methods: Vec<String>,
    /// Headers that must be present with exactly these values.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Match `path`/`path_prefix` ignoring ASCII case, for a backend that
    /// serves `/API/users` as `/api/users` (otherwise `/API` would walk
    /// around the `/api` route's plugins). The path is forwarded as sent.
    #[serde(default)]
    pub case_insensitive: bool,
}

/// One plugin in a route's chain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginEntry {
    /// Plugin name: the file `<plugins.dir>/<name>.wasm`.
    pub name: String,
    /// Passed to the plugin's `init` as JSON text (a Proxy-Wasm filter:
    /// to `proxy_on_configure`, empty when absent).
    #[serde(default)]
    pub config: serde_json::Value,
    /// A Proxy-Wasm filter's configuration as a plain string, for filters
    /// that do not expect JSON (Envoy's `configuration` as a `StringValue`);
    /// replaces `config`.
    #[serde(default)]
    pub config_text: Option<String>,
    /// What a plugin fault does to the request.
    #[serde(default)]
    pub on_error: OnError,
    /// Gated capabilities the plugin may use: `kv`, `outbound:<upstream>`,
    /// `outbound:*`. Nothing by default.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Overrides `plugins.max_concurrent_calls` for this entry.
    #[serde(default)]
    pub max_concurrent_calls: Option<usize>,
    /// Replaces `plugins.fault_breaker` for this entry (omitted fields take
    /// the defaults).
    #[serde(default)]
    pub fault_breaker: Option<FaultBreakerConfig>,
}

impl PluginEntry {
    /// The entry's `allow:` list, parsed.
    pub fn grants(&self) -> Result<Grants, BadGrant> {
        Grants::parse(self.allow.iter().map(String::as_str))
    }
}

/// What happens to a request when its plugin traps, times out or breaks its memory cap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Answer 500: a broken auth plugin must not let requests through.
    #[default]
    FailClosed,
    /// Skip the plugin and go on.
    FailOpen,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = yaml_file::read(path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::parse(&text, path, base)
    }

    /// Parses and validates config text; `file` is only used in errors.
    pub fn parse(text: &str, file: &Path, base_dir: &Path) -> Result<Config, ConfigError> {
        let yaml = YamlText { text, file };
        let mut config: Config = yaml.parse()?;
        config.base_dir = base_dir.to_path_buf();
        let locate = |problem: Problem| yaml.invalid(&problem.at, problem.message);
        config.check().map_err(locate)?;
        config.load_upstream_cas().map_err(locate)?;
        Ok(config)
    }

    /// The plugins directory, resolved against the config file's directory.
    pub fn plugin_dir(&self) -> PathBuf {
        self.base_dir.join(&self.plugins.dir)
    }

    /// Reads the CA bundle of every https upstream that names one, so a bad
    /// bundle fails the load (and `validate`) instead of the first request.
    fn load_upstream_cas(&mut self) -> Result<(), Problem> {
        for (name, upstream) in &mut self.upstreams {
            let Some(tls) = upstream.tls.as_mut() else {
                continue;
            };
            if let Some(ca) = &tls.ca {
                let roots =
                    crate::tls::pem::roots(&self.base_dir.join(ca)).map_err(|e| Problem {
                        at: FieldPath::root("upstreams").key(name).key("tls").key("ca"),
                        message: format!("upstream `{name}`: tls.ca: {e}"),
                    })?;
                tls.roots = Some(std::sync::Arc::new(roots));
            }
        }
        Ok(())
    }

    /// Semantic checks serde cannot express.
    fn check(&self) -> Result<(), Problem> {
        let problem = |at: FieldPath, message: String| Problem { at, message };
        if self.listeners.is_empty() {
            return Err(problem(
                FieldPath::root("listeners"),
                "at least one listener is required".into(),
            ));
        }
        self.check_limits()?;
        if self
            .admin
            .as_ref()
            .is_some_and(|a| a.token.as_deref() == Some(""))
        {
            return Err(problem(
                FieldPath::root("admin").key("token"),
                "admin.token must not be empty (leave it out for no token)".into(),
            ));
        }
        for (i, name) in self.strip_request_headers.iter().flatten().enumerate() {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(problem(
                    FieldPath::root("strip_request_headers").index(i),
                    format!("strip_request_headers: `{name}` is not a valid header name"),
                ));
            }
        }
        self.check_isolation()?;
        if let Some(otlp) = &self.tracing.otlp {
            export::check(otlp).map_err(|(field, message)| {
                problem(FieldPath::from("tracing.otlp").key(field), message)
            })?;
        }
        for (l, listener) in self.listeners.iter().enumerate() {
            let Some(tls) = &listener.tls else { continue };
            let address = listener.address.to_string();
            let at = FieldPath::root("listeners").index(l).key("tls");
            if tls.certificates.is_empty() {
                return Err(problem(
                    at.key("certificates"),
                    format!("listener {address}: tls needs at least one certificate"),
                ));
            }
            for (p, protocol) in tls.alpn.iter().enumerate() {
                if !crate::tls::config::ALPN_PROTOCOLS.contains(&protocol.as_str()) {
                    return Err(problem(
                        at.key("alpn").index(p),
                        format!(
                            "listener {address}: ALPN protocol `{protocol}` is not one of: {}",
                            crate::tls::config::ALPN_PROTOCOLS.join(", ")
                        ),
                    ));
                }
            }
        }
        for (name, upstream) in &self.upstreams {
            let at = FieldPath::root("upstreams").key(name);
            let server_name = upstream.tls.as_ref().and_then(|t| t.server_name.as_deref());
            if let Some(server_name) = server_name {
                if rustls_pki_types::ServerName::try_from(server_name).is_err() {
                    return Err(problem(
                        at.key("tls").key("server_name"),
                        format!("upstream `{name}`: tls.server_name `{server_name}` is not a DNS name or IP address"),
                    ));
                }
            }
            if upstream.targets.is_empty() {
                return Err(problem(
                    at.key("targets"),
                    format!("upstream `{name}` has no targets"),
                ));
            }
            for (t, target) in upstream.targets.iter().map(|t| &t.address).enumerate() {
                if target.parse::<http::uri::Authority>().is_err() || !target.contains(':') {
                    return Err(problem(
                        at.clone().key("targets").index(t),
                        format!("upstream `{name}`: target `{target}` is not host:port"),
                    ));
                }
            }
            resilience::check_upstream(name, upstream)
                .map_err(|(field, message)| problem(at.join(field), message))?;
        }
        let mut seen = std::collections::HashSet::new();
        for (i, route) in self.routes.iter().enumerate() {
            let at = FieldPath::root("routes").index(i);
            let here = |field: FieldPath, msg: String| {
                problem(
                    at.clone().join(field),
                    format!("routes[{i}] `{}`: {msg}", route.name),
                )
            };
            if !seen.insert(route.name.as_str()) {
                return Err(here("name".into(), "duplicate route name".into()));
            }
            if !self.upstreams.contains_key(&route.upstream) {
                return Err(here(
                    "upstream".into(),
                    format!(
                        "upstream `{}` is not defined (defined: {})",
                        route.upstream,
                        self.upstreams
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
            resilience::check_route(route).map_err(|(field, msg)| here(field, msg))?;
            if route.body_read_timeout_ms == Some(0) {
                return Err(here(
                    "body_read_timeout_ms".into(),
                    "body_read_timeout_ms must be greater than 0".into(),
                ));
            }
            let m = &route.matcher;
            if m.path.is_some() && m.path_prefix.is_some() {
                return Err(here(
                    "match.path".into(),
                    "match has both `path` and `path_prefix`; pick one".into(),
                ));
            }
            let paths = [
                ("match.path", &m.path),
                ("match.path_prefix", &m.path_prefix),
            ];
            for (field, p) in paths.iter().filter_map(|(f, p)| Some((f, p.as_ref()?))) {
                if !p.starts_with('/') {
                    return Err(here(
                        (*field).into(),
                        format!("match path `{p}` must start with `/`"),
                    ));
                }
            }
            for (k, method) in m.methods.iter().enumerate() {
                if method.parse::<http::Method>().is_err() {
                    return Err(here(
                        FieldPath::from("match.methods").index(k),
                        format!("`{method}` is not an HTTP method"),
                    ));
                }
            }
            for (j, plugin) in route.plugins.iter().enumerate() {
                let entry = |field: &str| FieldPath::root("plugins").index(j).join(field.into());
                let valid = !plugin.name.is_empty()
                    && plugin
                        .name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                if !valid {
                    return Err(here(
                        entry("name"),
                        format!(
                            "plugin name `{}` must be letters, digits, `-` or `_`",
                            plugin.name
                        ),
                    ));
                }
                self.check_grants(plugin)
                    .map_err(|(allowed, msg)| here(entry("allow").index(allowed), msg))?;
                crate::http::identity_headers::declared(plugin).map_err(|msg| {
                    here(
                        entry("config").key(crate::http::identity_headers::CONFIG_FIELD),
                        format!(
                            "plugin `{}`: config.{}: {msg}",
                            plugin.name,
                            crate::http::identity_headers::CONFIG_FIELD
                        ),
                    )
                })?;
                if plugin.max_concurrent_calls == Some(0) {
                    return Err(here(
                        entry("max_concurrent_calls"),
                        format!(
                            "plugin `{}`: max_concurrent_calls must be at least 1",
                            plugin.name
                        ),
                    ));
                }
                if let Some(breaker) = &plugin.fault_breaker {
                    isolation::check_breaker(&format!("plugin `{}`: ", plugin.name), breaker)
                        .map_err(|(field, msg)| here(entry(&field), msg))?;
                }
            }
        }
        Ok(())
    }

    /// Limits that would make the gateway unusable or that hyper refuses.
    fn check_limits(&self) -> Result<(), Problem> {
        let limits = &self.limits;
        let problem = |field: &str, message: String| Problem {
            at: FieldPath::root("limits").key(field),
            message: format!("limits.{field}: {message}"),
        };
        if limits.max_header_bytes < MIN_HEADER_BYTES {
            return Err(problem(
                "max_header_bytes",
                format!("must be at least {MIN_HEADER_BYTES}"),
            ));
        }
        if u32::try_from(limits.max_header_bytes).is_err() {
            return Err(problem(
                "max_header_bytes",
                format!("must be at most {}", u32::MAX),
            ));
        }
        let positive = [
            ("max_body_bytes", limits.max_body_bytes as u64),
            (
                "max_response_body_bytes",
                limits.max_response_body_bytes as u64,
            ),
            ("header_read_timeout_ms", limits.header_read_timeout_ms),
            ("idle_timeout_ms", limits.idle_timeout_ms),
            ("max_connections", limits.max_connections as u64),
            ("body_read_timeout_ms", limits.body_read_timeout_ms),
            ("tunnel_idle_timeout_ms", limits.tunnel_idle_timeout_ms),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(problem(field, "must be greater than 0".into()));
            }
        }
        if limits.max_connections > tokio::sync::Semaphore::MAX_PERMITS {
            return Err(problem(
                "max_connections",
                format!("must be at most {}", tokio::sync::Semaphore::MAX_PERMITS),
            ));
        }
        Ok(())
    }
}

impl Config {
    /// The `plugins:` concurrency and breaker settings and the `kv:` budget.
    fn check_isolation(&self) -> Result<(), Problem> {
        let problem = |parent: &str, (field, message): (String, String)| Problem {
            at: FieldPath::root(parent).join(field.as_str().into()),
            message,
        };
        let plugins = &self.plugins;
        if plugins.max_concurrent_calls == 0 || plugins.queue_timeout_ms == 0 {
            let field = match plugins.max_concurrent_calls {
                0 => "max_concurrent_calls",
                _ => "queue_timeout_ms",
            };
            return Err(problem(
                "plugins",
                (
                    field.into(),
                    "plugins.max_concurrent_calls and queue_timeout_ms must be at least 1".into(),
                ),
            ));
        }
        if !(1..=MAX_PLUGIN_INSTANCES).contains(&plugins.max_instances) {
            return Err(problem(
                "plugins",
                (
                    "max_instances".into(),
                    format!(
                        "plugins.max_instances {} must be between 1 and {MAX_PLUGIN_INSTANCES}",
                        plugins.max_instances
                    ),
                ),
            ));
        }
        isolation::check_breaker("plugins.", &plugins.fault_breaker)
            .map_err(|e| problem("plugins", e))?;
        isolation::check_kv(&self.kv).map_err(|e| problem("kv", e))
    }

    /// A plugin entry's `allow:` list names real capabilities and upstreams;
    /// on error, the index of the wrong entry in `allow:` and the message.
    fn check_grants(&self, plugin: &PluginEntry) -> Result<(), (usize, String)> {
        let name = &plugin.name;
        let index_of = |entry: &str| plugin.allow.iter().position(|a| a == entry).unwrap_or(0);
        let grants = plugin
            .grants()
            .map_err(|e| (index_of(&e.entry), format!("plugin `{name}`: allow: {e}")))?;
        let missing = grants
            .named_upstreams()
            .find(|u| !self.upstreams.contains_key(*u))
            .map(str::to_string);
        match missing {
            Some(missing) => Err((
                index_of(&format!("outbound:{missing}")),
                format!("plugin `{name}`: allow: `outbound:{missing}` names an upstream that is not defined"),
            )),
            None => Ok(()),
        }
    }
}

/// A semantic problem and the field it is about, whose line the error names.
struct Problem {
    at: FieldPath,
    message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("gw.yaml"), Path::new("."))
    }

    const GOOD: &str = "
listeners:
  - address: 127.0.0.1:0
upstreams:
  users:
    targets: [127.0.0.1:9001]
routes:
  - name: users
    match: { path_prefix: /users }
    upstream: users
    plugins:
      - name: api-key
        config: { keys: [] }
";

    #[test]
    fn parses_a_good_config_with_defaults() {
        let config = parse(GOOD).unwrap();
        assert_eq!(config.routes[0].plugins[0].on_error, OnError::FailClosed);
        assert_eq!(config.plugins.call_timeout_ms, 100);
        assert_eq!(config.upstreams["users"].timeout_ms, 30_000);
        assert_eq!(config.limits.max_header_bytes, 64 * 1024);
        assert_eq!(config.routes[0].max_body_bytes, None);
    }

    #[test]
    fn bad_limit_names_the_field_and_line() {
        let text = format!("{GOOD}limits:\n  idle_timeout_ms: 5\n  max_header_bytes: 100\n");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.starts_with("gw.yaml:16:"), "{err}");
        assert!(
            err.contains("limits.max_header_bytes: must be at least 8192"),
            "{err}"
        );
    }

    #[test]
    fn body_and_tunnel_timeouts_default_and_refuse_zero() {
        let config = parse(GOOD).unwrap();
        assert_eq!(config.limits.body_read_timeout_ms, 30_000);
        assert_eq!(config.limits.tunnel_idle_timeout_ms, 300_000);
        assert_eq!(config.routes[0].body_read_timeout_ms, None);

        let text = format!("{GOOD}limits:\n  tunnel_idle_timeout_ms: 0\n");
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.contains("limits.tunnel_idle_timeout_ms: must be greater than 0"),
            "{err}"
        );
        let text = GOOD.replace(
            "    upstream: users\n",
            "    upstream: users\n    body_read_timeout_ms: 0\n",
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.starts_with("gw.yaml:11:"), "{err}");
        assert!(
            err.contains("routes[0] `users`: body_read_timeout_ms must be greater than 0"),
            "{err}"
        );
    }

    #[test]
    fn unknown_limit_is_refused() {
        let text = format!("{GOOD}limits:\n  max_conections: 5\n");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("unknown field `max_conections`"), "{err}");
    }

    #[test]
    fn unknown_field_names_the_line() {
        let text = GOOD.replace("    upstream: users", "    upstrem: users");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.starts_with("gw.yaml:10:"), "{err}");
        assert!(err.contains("unknown field `upstrem`"), "{err}");
    }

    #[test]
    fn undefined_upstream_names_route_and_line() {
        let text = GOOD.replace("    upstream: users", "    upstream: orders");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.starts_with("gw.yaml:10:"), "{err}");
        assert!(err.contains("upstream `orders` is not defined"), "{err}");
    }

    /// The route is found by its place in the document, not by text: the
    /// error about route `a` must not point into route `admin`, whose
    /// `name: admin` line contains `name: a`.
    #[test]
    fn an_error_points_at_its_own_route_not_one_whose_name_it_prefixes() {
        let text = "
listeners:
  - address: 127.0.0.1:0
upstreams:
  users: { targets: ['127.0.0.1:9001'] }
routes:
  - name: admin
    match: { path_prefix: /admin }
    upstream: users
  - name: a
    match: { path_prefix: /a }
    upstream: orders
";
        let err = parse(text).unwrap_err().to_string();
        assert!(err.starts_with("gw.yaml:12:"), "{err}");
        assert!(err.contains("routes[1] `a`: upstream `orders`"), "{err}");
    }

    #[test]
    fn targets_take_weights_and_resilience_knobs_default_off() {
        let text = GOOD.replace(
            "targets: [127.0.0.1:9001]",
            "targets: [127.0.0.1:9001, { address: '127.0.0.1:9002', weight: 3 }]",
        );
        let config = parse(&text).unwrap();
        let users = &config.upstreams["users"];
        assert_eq!(users.targets[0].weight, 1);
        assert_eq!(users.targets[1].address, "127.0.0.1:9002");
        assert_eq!(users.targets[1].weight, 3);
        assert_eq!(users.balance, BalanceStrategy::RoundRobin);
        assert!(users.health_check.is_none() && users.circuit_breaker.is_none());
        assert!(config.routes[0].retries.is_none());
    }

    #[test]
    fn bad_resilience_values_name_the_line() {
        let text = GOOD.replace(
            "targets: [127.0.0.1:9001]",
            "targets: [127.0.0.1:9001]\n    circuit_breaker:\n      failure_ratio: 1.5",
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.starts_with("gw.yaml:8:"), "{err}");
        assert!(err.contains("failure_ratio 1.5 must be in (0, 1]"), "{err}");
        let text = GOOD.replace(
            "targets: [127.0.0.1:9001]",
            "targets: [{ address: '127.0.0.1:9001', wieght: 2 }]",
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("unknown field `wieght`"), "{err}");
        let text = GOOD.replace(
            "    upstream: users",
            "    upstream: users\n    balance: random",
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("unknown variant `random`"), "{err}");
    }

    #[test]
    fn allow_list_is_checked() {
        let with = |allow: &str| {
            GOOD.replace(
                "config: { keys: [] }",
                &format!("config: {{ keys: [] }}\n        allow: {allow}"),
            )
        };
        let config = parse(&with("[kv, 'outbound:users']")).unwrap();
        let grants = config.routes[0].plugins[0].grants().unwrap();
        assert!(grants.kv && grants.allows_upstream("users"));
        let err = parse(&with("[disk]")).unwrap_err().to_string();
        assert!(err.starts_with("gw.yaml:14:"), "{err}");
        assert!(err.contains("`disk` is not a capability"), "{err}");
        let err = parse(&with("['outbound:orders']")).unwrap_err().to_string();
        assert!(err.starts_with("gw.yaml:14:"), "{err}");
        assert!(
            err.contains("`outbound:orders` names an upstream that is not defined"),
            "{err}"
        );
    }

    #[test]
    fn tls_settings_parse_with_defaults() {
        let text = GOOD.replace(
            "  - address: 127.0.0.1:0\n",
            "  - address: 127.0.0.1:0\n    tls:\n      certificates: [{ cert: c.pem, key: k.pem }]\n",
        ).replace(
            "    targets: [127.0.0.1:9001]\n",
            "    targets: [127.0.0.1:9001]\n    protocol: h2\n    tls: { server_name: api.internal }\n",
        );
        let config = parse(&text).unwrap();
        let tls = config.listeners[0].tls.as_ref().unwrap();
        assert_eq!(tls.alpn, ["h2", "http/1.1"]);
        assert!(tls.client_auth.is_none());
        let upstream = &config.upstreams["users"];
        assert_eq!(upstream.protocol, UpstreamProtocol::H2);
        assert_eq!(
            upstream.tls.as_ref().unwrap().server_name.as_deref(),
            Some("api.internal")
        );
        assert_eq!(config.upstreams["users"].protocol, UpstreamProtocol::H2);
    }

    #[test]
    fn unknown_alpn_protocol_names_the_line() {
        let text = GOOD.replace(
            "  - address: 127.0.0.1:0\n",
            "  - address: 127.0.0.1:0\n    tls:\n      certificates: [{ cert: c.pem, key: k.pem }]\n      alpn: [h3]\n",
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.starts_with("gw.yaml:6:"), "{err}");
        assert!(err.contains("ALPN protocol `h3`"), "{err}");
    }

    #[test]
    fn unreadable_upstream_ca_names_the_line_and_the_file() {
        let text = GOOD.replace(
            "    targets: [127.0.0.1:9001]\n",
            "    targets: [127.0.0.1:9001]\n    tls:\n      ca: missing-ca.pem\n",
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.starts_with("gw.yaml:8:"), "{err}");
        assert!(err.contains("missing-ca.pem: cannot read"), "{err}");
    }

    #[test]
    fn bad_upstream_protocol_is_refused() {
        let text = GOOD.replace(
            "    targets: [127.0.0.1:9001]\n",
            "    targets: [127.0.0.1:9001]\n    protocol: h3\n",
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("unknown variant `h3`"), "{err}");
    }

    #[test]
    fn otlp_export_is_off_by_default_and_checked() {
        assert!(parse(GOOD).unwrap().tracing.otlp.is_none());
        let with = |otlp: &str| format!("{GOOD}tracing:\n  otlp:\n{otlp}");
        let config = parse(&with("    endpoint: http://127.0.0.1:4318/v1/traces\n")).unwrap();
        let otlp = config.tracing.otlp.unwrap();
        assert_eq!(otlp.service_name, "wasmgate");
        assert_eq!(otlp.sample_ratio, 1.0);
        assert_eq!(otlp.batch_delay_ms, 5_000);
        let err = parse(&with(
            "    endpoint: http://127.0.0.1:4318/v1/traces\n    sample_ratio: 2\n",
        ))
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("gw.yaml:17:"), "{err}");
        assert!(err.contains("sample_ratio 2 must be in [0, 1]"), "{err}");
        let err = parse(&with("    endpoint: grpc://collector:4317\n"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("gw.yaml:16:"), "{err}");
        assert!(err.contains("is not an http:// URL"), "{err}");
        let err = parse(&with(
            "    endpoint: http://c/v1/traces\n    sampler: all\n",
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown field `sampler`"), "{err}");
    }

    #[test]
    fn bad_identity_header_names_name_the_field_and_line() {
        let text = format!("strip_request_headers: [x-consumer, 'bad name']\n{GOOD}");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.starts_with("gw.yaml:1:"), "{err}");
        assert!(
            err.contains("strip_request_headers: `bad name` is not a valid header name"),
            "{err}"
        );
        let config = parse(&format!("strip_request_headers: [X-Consumer]\n{GOOD}")).unwrap();
        assert_eq!(config.strip_request_headers.unwrap(), ["X-Consumer"]);
        assert!(parse(GOOD).unwrap().strip_request_headers.is_none());
        let text = GOOD.replace(
            "config: { keys: [] }",
            "config: { keys: [], identity_headers: x-consumer }",
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.starts_with("gw.yaml:13:"), "{err}");
        assert!(
            err.contains(
                "plugin `api-key`: config.identity_headers: must be a list of header names"
            ),
            "{err}"
        );
    }

    #[test]
    fn isolation_settings_default_and_are_checked() {
        let config = parse(GOOD).unwrap();
        assert_eq!(config.plugins.max_concurrent_calls, 64);
        assert_eq!(config.plugins.queue_timeout_ms, 50);
        assert_eq!(config.plugins.fault_breaker, FaultBreakerConfig::default());
        assert_eq!(config.plugins.fault_breaker.faults, 5);
        assert_eq!(config.kv.max_bytes, 64 << 20);
        assert_eq!(config.kv.default_namespace_bytes(), 32 << 20);
        let entry = format!(
            "{GOOD}        max_concurrent_calls: 4\n        fault_breaker: {{ faults: 2 }}\n"
        );
        let config = parse(&entry).unwrap();
        let plugin = &config.routes[0].plugins[0];
        assert_eq!(plugin.max_concurrent_calls, Some(4));
        assert_eq!(plugin.fault_breaker.unwrap().faults, 2);
        assert_eq!(plugin.fault_breaker.unwrap().cool_down_ms, 30_000);
        let kv = format!("{GOOD}kv:\n  max_bytes: 1000\n  namespaces: {{ cache: 2000 }}\n");
        let err = parse(&kv).unwrap_err().to_string();
        assert!(err.starts_with("gw.yaml:16:"), "{err}");
        assert!(
            err.contains("budget of `cache` (2000) must be between 1 and kv.max_bytes (1000)"),
            "{err}"
        );
        let ratio = format!("{GOOD}        fault_breaker: {{ failure_ratio: 2 }}\n");
        let err = parse(&ratio).unwrap_err().to_string();
        assert!(
            err.contains("fault_breaker.failure_ratio 2 must be in [0, 1]"),
            "{err}"
        );
        let none = format!("{GOOD}plugins:\n  max_instances: 0\n");
        let err = parse(&none).unwrap_err().to_string();
        assert!(
            err.contains("plugins.max_instances 0 must be between 1 and 10000"),
            "{err}"
        );
        let zero = format!("{GOOD}plugins:\n  max_concurrent_calls: 0\n");
        let err = parse(&zero).unwrap_err().to_string();
        assert!(
            err.contains("max_concurrent_calls and queue_timeout_ms must be at least 1"),
            "{err}"
        );
        let typo = format!("{GOOD}kv:\n  max_byte: 5\n");
        assert!(parse(&typo)
            .unwrap_err()
            .to_string()
            .contains("unknown field `max_byte`"));
    }

    #[test]
    fn the_kv_backend_defaults_to_memory_and_redis_is_checked() {
        let config = parse(GOOD).unwrap();
        assert_eq!(config.kv.backend, KvBackend::Memory);
        assert!(config.kv.redis.is_none());
        let redis =
            format!("{GOOD}kv:\n  backend: redis\n  redis:\n    url: redis://127.0.0.1:6379/2\n");
        let config = parse(&redis).unwrap();
        let settings = config.kv.redis.unwrap();
        assert_eq!(config.kv.backend, KvBackend::Redis);
        assert_eq!(settings.key_prefix, "wasmgate:");
        assert_eq!(settings.timeout_ms, 50);
        assert!(!settings.required_for_ready);
        let tls = format!("{GOOD}kv:\n  backend: redis\n  redis: {{ url: 'rediss://r.internal:6380', timeout_ms: 20, required_for_ready: true }}\n");
        assert!(parse(&tls).unwrap().kv.redis.unwrap().required_for_ready);

        let missing = format!("{GOOD}kv:\n  max_bytes: 1000\n  backend: redis\n");
        let err = parse(&missing).unwrap_err().to_string();
        assert!(err.starts_with("gw.yaml:16:"), "{err}");
        assert!(err.contains("kv.backend `redis` needs kv.redis"), "{err}");
        let stray = format!("{GOOD}kv:\n  redis: {{ url: 'redis://h:1' }}\n");
        let err = parse(&stray).unwrap_err().to_string();
        assert!(err.starts_with("gw.yaml:15:"), "{err}");
        assert!(err.contains("kv.backend is `memory`"), "{err}");
        let bad_url = format!(
            "{GOOD}kv:\n  backend: redis\n  redis:\n    key_prefix: a\n    url: 'http://u:hunter2@h:1'\n"
        );
        let err = parse(&bad_url).unwrap_err().to_string();
        assert!(err.starts_with("gw.yaml:18:"), "{err}");
        assert!(err.contains("kv.redis.url is not a redis://"), "{err}");
        assert!(
            !err.contains("hunter2"),
            "the password is not repeated: {err}"
        );
        let zero = format!(
            "{GOOD}kv:\n  backend: redis\n  redis:\n    url: redis://h:1\n    timeout_ms: 0\n"
        );
        let err = parse(&zero).unwrap_err().to_string();
        assert!(err.starts_with("gw.yaml:18:"), "{err}");
        assert!(err.contains("timeout_ms must be at least 1"), "{err}");
        let typo =
            format!("{GOOD}kv:\n  backend: redis\n  redis: {{ url: 'redis://h:1', timeout: 5 }}\n");
        let err = parse(&typo).unwrap_err().to_string();
        assert!(err.contains("unknown field `timeout`"), "{err}");
        let backend = format!("{GOOD}kv:\n  backend: memcached\n");
        let err = parse(&backend).unwrap_err().to_string();
        assert!(err.contains("unknown variant `memcached`"), "{err}");
    }

    #[test]
    fn bad_on_error_value_is_refused() {
        let text = format!("{GOOD}        on_error: maybe\n");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("unknown variant `maybe`"), "{err}");
    }
}
