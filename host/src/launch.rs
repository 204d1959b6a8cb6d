//! Building and running a gateway from its config file: the one build path
//! that `validate` stops after and `start` goes on from to listen, watch
//! and serve.

use crate::admin;
use crate::config::KvBackend;
use crate::config::{Config, ConfigError};
use crate::gateway::{Gateway, Shared};
use crate::http::{descriptors, server};
use crate::observe::metrics;
use crate::observe::span_export::{self, SpanExport};
use crate::plugin::catalog::PluginCatalog;
use crate::plugin::host::kv::{GatewayKv, KvLimits, RedisKv, RedisKvError};
use crate::plugin::host::{outbound::GatewayOutbound, telemetry::GatewayTelemetry};
use crate::plugin::{HostServices, MemoryKv, PluginError, PluginRuntime};
use crate::reload::{self, certificates, ReloadEvent, Reloader};
use crate::tls::{TlsError, TlsListener};
use crate::upstream::{self, HttpClient, UpstreamDirectory};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::task::JoinHandle;

/// Why the gateway could not start (or a config could not be validated).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Plugin(#[from] PluginError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    SpanExport(#[from] span_export::ExportSetupError),
    #[error(transparent)]
    Kv(#[from] RedisKvError),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot watch {path} for changes: {source}")]
    Watch {
        path: PathBuf,
        source: notify::Error,
    },
}

/// Everything the first generation is built on, built the same way for
/// `validate` and `start`.
struct Built {
    config: Arc<Config>,
    tls: Vec<Option<Arc<TlsListener>>>,
    upstreams: Arc<UpstreamDirectory>,
    client: HttpClient,
    kv: GatewayKv,
    runtime: Arc<PluginRuntime>,
    catalog: PluginCatalog,
    gateway: Gateway,
}

/// Loads the config, its certificates and every plugin, and builds the
/// first generation (each plugin initialised with its route config).
async fn build(config_path: &Path) -> Result<Built, StartError> {
    let config = Arc::new(Config::load(config_path)?);
    let tls = tls_listeners(&config)?;
    let upstreams = Arc::new(UpstreamDirectory::default());
    let client = upstream::http_client();
    let kv = gateway_kv(&config)?;
    let runtime = Arc::new(PluginRuntime::with_max_instances(
        HostServices {
            kv: kv.store(),
            outbound: Arc::new(GatewayOutbound {
                client: client.clone(),
                upstreams: upstreams.clone(),
            }),
            telemetry: GatewayTelemetry::process_wide(),
        },
        config.plugins.max_instances,
    )?);
    let mut catalog = PluginCatalog::default();
    let gateway = Gateway::build(config.clone(), None, &mut catalog, &runtime).await?;
    Ok(Built {
        config,
        tls,
        upstreams,
        client,
        kv,
        runtime,
        catalog,
        gateway,
    })
}

/// The gateway's kv store, reporting to `/metrics`: in memory within the
/// config's budget, or on Redis (connecting lazily, so a gateway starts
/// before its Redis does).
fn gateway_kv(config: &Config) -> Result<GatewayKv, RedisKvError> {
    let metrics = metrics::metrics();
    match (&config.kv.backend, &config.kv.redis) {
        (KvBackend::Redis, Some(redis)) => Ok(GatewayKv::Redis(Arc::new(RedisKv::new(
            redis,
            Some(metrics.kv_redis.clone()),
        )?))),
        _ => {
            metrics.kv_max_bytes.set(config.kv.max_bytes as i64);
            Ok(GatewayKv::Memory(Arc::new(
                MemoryKv::new(KvLimits::from(&config.kv)).with_metrics(metrics.kv.clone()),
            )))
        }
    }
}

/// The TLS side of each listener, in config order (`None` for plain ones).
fn tls_listeners(config: &Config) -> Result<Vec<Option<Arc<TlsListener>>>, TlsError> {
    config
        .listeners
        .iter()
        .map(|l| {
            l.tls
                .as_ref()
                .map(|tls| TlsListener::load(tls, &config.base_dir).map(Arc::new))
                .transpose()
        })
        .collect()
}

/// Loads a config and builds the gateway from it — compiling every plugin and
/// initialising it with its route config, loading every listener's
/// certificates — without listening. What `wasmgate validate` runs.
pub async fn validate(config_path: &Path) -> Result<Gateway, StartError> {
    Ok(build(config_path).await?.gateway)
}

/// How long a graceful shutdown waits for in-flight requests.
pub const DRAIN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// A running gateway. Dropping it stops the listeners and the watcher.
pub struct RunningGateway {
    /// The bound address of each listener, in config order.
    pub addresses: Vec<SocketAddr>,
    /// The bound admin address, if the config has an admin listener.
    pub admin_address: Option<SocketAddr>,
    reloader: Arc<Reloader>,
    spans: Option<Arc<SpanExport>>,
    listeners: Vec<JoinHandle<()>>,
    tasks: Vec<JoinHandle<()>>,
    stop: tokio::sync::watch::Sender<bool>,
    _watcher: notify::RecommendedWatcher,
    _certificate_watcher: Option<notify::RecommendedWatcher>,
}

impl RunningGateway {
    /// Every hot-reload attempt so far, oldest first.
    pub fn reload_events(&self) -> Vec<ReloadEvent> {
        self.reloader.events()
    }

    /// Stops accepting connections, waits until in-flight requests have
    /// finished (or [`DRAIN_DEADLINE`] has passed), then sends the spans
    /// still queued for export.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for listener in std::mem::take(&mut self.listeners) {
            let _ = listener.await;
        }
        if let Some(spans) = self.spans.take() {
            let _ = tokio::task::spawn_blocking(move || spans.shutdown()).await;
        }
    }
}

impl Drop for RunningGateway {
    fn drop(&mut self) {
        for task in self.tasks.iter().chain(&self.listeners) {
            task.abort();
        }
    }
}

/// Binds `address`, naming it in the error.
async fn bind(address: SocketAddr) -> Result<tokio::net::TcpListener, StartError> {
    tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| StartError::Bind { address, source })
}

/// Starts the gateway from a config file: builds the first generation, binds
/// every listener, and watches the config and plugin files for hot reload.
pub async fn start(config_path: &Path) -> Result<RunningGateway, StartError> {
    let built = build(config_path).await?;
    let (config, upstreams) = (built.config, built.upstreams);
    upstreams.publish(built.gateway.upstreams.clone());
    let spans = match &config.tracing.otlp {
        Some(otlp) => Some(Arc::new(SpanExport::start(
            otlp,
            tokio::runtime::Handle::current(),
        )?)),
        None => None,
    };
    let shared = Arc::new(Shared {
        gateway: arc_swap::ArcSwap::from_pointee(built.gateway),
        upstreams,
        client: built.client,
        spans: spans.clone(),
        kv_readiness: built.kv.readiness(),
    });

    let mut listeners = Vec::new();
    for listener in &config.listeners {
        listeners.push(bind(listener.address).await?);
    }
    let addresses = listeners
        .iter()
        .map(|l| l.local_addr().expect("bound listener has an address"))
        .collect();

    let plugin_dir = config.plugin_dir();
    let admin = config.admin.clone();
    let sweep_interval = std::time::Duration::from_millis(config.kv.sweep_interval_ms);
    let max_connections =
        descriptors::max_connections_per_listener(config.limits.max_connections, listeners.len());
    let reloader = Arc::new(Reloader::new(
        config_path.to_path_buf(),
        built.runtime,
        shared.clone(),
        config,
        built.catalog,
    ));
    let watcher =
        reload::watch(reloader.clone(), &plugin_dir).map_err(|source| StartError::Watch {
            path: plugin_dir.clone(),
            source,
        })?;
    let certificate_watcher = certificates::watch(
        built.tls.iter().flatten().cloned().collect(),
        reloader.clone(),
    )
    .map_err(|source| StartError::Watch {
        path: config_path.to_path_buf(),
        source,
    })?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let listeners = listeners
        .into_iter()
        .zip(built.tls)
        .enumerate()
        .map(|(index, (socket, tls))| {
            tokio::spawn(server::serve(
                server::Listener {
                    socket,
                    index,
                    tls,
                    max_connections,
                },
                shared.clone(),
                stopped.clone(),
                DRAIN_DEADLINE,
            ))
        })
        .collect();
    // Expired memory kv entries are freed even if nobody reads them again;
    // a Redis outage is noticed (and its end) even without traffic.
    let mut tasks = vec![tokio::spawn(built.kv.maintain(sweep_interval))];
    let admin_address = match &admin {
        Some(admin) => {
            let listener = bind(admin.address).await?;
            let address = listener.local_addr().ok();
            tasks.push(tokio::spawn(admin::serve(
                listener,
                shared.clone(),
                reloader.clone(),
                admin.token.as_deref().map(Arc::from),
            )));
            address
        }
        None => None,
    };
    Ok(RunningGateway {
        addresses,
        admin_address,
        reloader,
        spans,
        listeners,
        tasks,
        stop,
        _watcher: watcher,
        _certificate_watcher: certificate_watcher,
    })
}
