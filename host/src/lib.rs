//! wasmgate: an API gateway whose every policy is a sandboxed WebAssembly
//! component.
//!
//! A request flows: [`server`] (hyper listener, [`tls`] termination) → [`proxy::handle`] →
//! [`router`] picks the route → [`chain`] runs the route's plugins' request
//! hooks in order → [`upstream`] sends it on → the response hooks run in
//! reverse order → back to the client ([`websocket`] upgrades become a
//! tunnel after the request hooks). Plugins run in [`plugin`] (wasmtime
//! component model, contract in `wit/`). A [`gateway::Gateway`] is one
//! immutable generation of all that; [`reload`] builds the next one when
//! the config or a plugin file changes and swaps it in atomically.
//! [`limits`] bounds connections and bodies ([`body_timeout`] how long a
//! body may take, [`descriptors`] what the open-file limit allows, [`tunnel`]
//! what a WebSocket tunnel holds); every request is counted in
//! [`metrics`] and logged by [`access_log`] with its [`tracecontext`] trace id;
//! [`span_export`] sends it to an OTLP collector as a span when configured.
//!
//! Run `examples/quickstart/wasmgate.yaml` with `make demo`; embed with [`start`].

pub mod accept;
pub mod access_log;
pub mod admin;
pub mod body;
pub mod body_timeout;
pub mod catalog;
pub mod chain;
pub mod config;
pub mod convert;
pub mod dashboard;
pub mod demo;
pub mod descriptors;
pub(crate) mod file_watch;
pub mod gateway;
pub mod identity_headers;
pub mod limits;
pub mod metrics;
pub mod outbound;
pub mod path;
pub mod plugin;
pub mod plugin_test;
pub mod proxy;
pub mod reload;
pub mod router;
pub mod scaffold;
pub mod server;
pub mod span_export;
pub mod strict;
pub mod telemetry;
pub mod tls;
pub mod tracecontext;
pub mod tunnel;
pub mod upstream;
pub mod websocket;

use crate::catalog::PluginCatalog;
use crate::config::{Config, ConfigError};
use crate::gateway::Gateway;
use crate::plugin::kv::KvLimits;
use crate::plugin::{HostServices, MemoryKv, PluginError, PluginRuntime};
use crate::proxy::Shared;
use crate::reload::{ReloadEvent, Reloader};
use crate::span_export::SpanExport;
use crate::tls::{TlsError, TlsListener};
use crate::upstream::UpstreamDirectory;
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

/// The gateway's kv store, within the config's budget, reporting to `/metrics`.
fn gateway_kv(config: &Config) -> Arc<MemoryKv> {
    let metrics = metrics::metrics();
    metrics.kv_max_bytes.set(config.kv.max_bytes as i64);
    Arc::new(MemoryKv::new(KvLimits::from(&config.kv)).with_metrics(metrics.kv.clone()))
}

/// The gateway's capabilities for plugins, wired to the given upstream directory.
fn gateway_services(
    kv: Arc<MemoryKv>,
    upstreams: Arc<UpstreamDirectory>,
    client: upstream::HttpClient,
) -> HostServices {
    HostServices {
        kv,
        outbound: Arc::new(outbound::GatewayOutbound { client, upstreams }),
        telemetry: telemetry::GatewayTelemetry::process_wide(),
    }
}

/// Loads a config and builds the gateway from it — compiling every plugin and
/// initialising it with its route config, loading every listener's
/// certificates — without listening. What `wasmgate validate` runs.
pub async fn validate(config_path: &Path) -> Result<Gateway, StartError> {
    let config = Arc::new(Config::load(config_path)?);
    tls_listeners(&config)?;
    let upstreams = Arc::new(UpstreamDirectory::default());
    let kv = Arc::new(MemoryKv::new(KvLimits::from(&config.kv)));
    let runtime = Arc::new(PluginRuntime::new(gateway_services(
        kv,
        upstreams,
        upstream::http_client(),
    ))?);
    let mut catalog = PluginCatalog::default();
    Ok(Gateway::build(config, None, &mut catalog, &runtime).await?)
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

/// Starts the gateway from a config file: builds the first generation, binds
/// every listener, and watches the config and plugin files for hot reload.
pub async fn start(config_path: &Path) -> Result<RunningGateway, StartError> {
    let config = Arc::new(Config::load(config_path)?);
    let tls = tls_listeners(&config)?;
    let upstreams = Arc::new(UpstreamDirectory::default());
    let client = upstream::http_client();
    let kv = gateway_kv(&config);
    let runtime = Arc::new(PluginRuntime::new(gateway_services(
        kv.clone(),
        upstreams.clone(),
        client.clone(),
    ))?);
    let mut catalog = PluginCatalog::default();
    let gateway = Gateway::build(config.clone(), None, &mut catalog, &runtime).await?;
    upstreams.publish(gateway.upstreams.clone());
    let spans = match &config.tracing.otlp {
        Some(otlp) => Some(Arc::new(SpanExport::start(
            otlp,
            tokio::runtime::Handle::current(),
        )?)),
        None => None,
    };
    let shared = Arc::new(Shared {
        gateway: arc_swap::ArcSwap::from_pointee(gateway),
        upstreams,
        client,
        spans: spans.clone(),
    });

    let mut listeners = Vec::new();
    for listener in &config.listeners {
        let bound = tokio::net::TcpListener::bind(listener.address)
            .await
            .map_err(|source| StartError::Bind {
                address: listener.address,
                source,
            })?;
        listeners.push(bound);
    }
    let addresses = listeners
        .iter()
        .map(|l| l.local_addr().expect("bound listener has an address"))
        .collect();

    let plugin_dir = config.plugin_dir();
    let admin = config.admin.clone();
    let config_sweep_ms = config.kv.sweep_interval_ms;
    let config_max_connections = config.limits.max_connections;
    let reloader = Arc::new(Reloader::new(
        config_path.to_path_buf(),
        runtime,
        shared.clone(),
        config,
        catalog,
    ));
    let watcher =
        reload::watch(reloader.clone(), &plugin_dir).map_err(|source| StartError::Watch {
            path: plugin_dir.clone(),
            source,
        })?;
    let certificate_watcher =
        tls::watch::watch(tls.iter().flatten().cloned().collect(), reloader.clone()).map_err(
            |source| StartError::Watch {
                path: config_path.to_path_buf(),
                source,
            },
        )?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let max_connections =
        descriptors::max_connections_per_listener(config_max_connections, listeners.len());
    let listeners = listeners
        .into_iter()
        .zip(tls)
        .enumerate()
        .map(|(index, (l, tls))| {
            tokio::spawn(server::serve(
                server::Listener {
                    socket: l,
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
    // Expired kv entries are freed even if nobody reads them again.
    let mut tasks = vec![tokio::spawn(plugin::kv::sweep_forever(
        kv,
        std::time::Duration::from_millis(config_sweep_ms),
    ))];
    let admin_address = match &admin {
        Some(admin) => {
            let listener =
                tokio::net::TcpListener::bind(admin.address)
                    .await
                    .map_err(|source| StartError::Bind {
                        address: admin.address,
                        source,
                    })?;
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
