//! A gateway generation: routes, upstreams and plugin chains built from one
//! config and one plugin catalog. Requests load the current generation once
//! and finish on it, so a reload never changes a request midway.

use crate::config::Config;
use crate::http::identity_headers::StripList;
use crate::http::path::{PathPolicy, PathPolicyOverride};
use crate::observe::metrics::RouteSeries;
use crate::observe::span_export::SpanExport;
use crate::plugin::catalog::PluginCatalog;
use crate::plugin::host::kv::RedisKv;
use crate::plugin::{PluginError, PluginLimits, PluginRuntime, Tier};
use crate::proxy::chain::{Chain, Step};
use crate::proxy::router::Router;
use crate::upstream::{CallPolicy, Upstream};
use crate::upstream::{HttpClient, UpstreamDirectory};
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// State shared by every connection: the current gateway generation (swapped
/// whole by a reload), the upstream directory, the pooled client, the span
/// exporter, if any, and the Redis kv store when `/readyz` waits for it.
pub struct Shared {
    pub gateway: ArcSwap<Gateway>,
    pub upstreams: Arc<UpstreamDirectory>,
    pub client: HttpClient,
    pub spans: Option<Arc<SpanExport>>,
    /// Set with `kv.redis.required_for_ready`: not ready while it is down.
    pub kv_readiness: Option<Arc<RedisKv>>,
}

/// One immutable generation of the gateway's routing state.
pub struct Gateway {
    pub config: Arc<Config>,
    router: Router,
    pub routes: Vec<Route>,
    pub upstreams: HashMap<String, Arc<Upstream>>,
    /// Identity headers no client may send (`strip_request_headers`).
    strip: StripList,
    /// What trailer sections may carry through this generation.
    pub trailers: Arc<crate::http::trailers::Policy>,
}

/// A route ready to serve.
pub struct Route {
    pub name: Arc<str>,
    pub upstream: Arc<Upstream>,
    /// How this route calls its upstream: timeouts, retries, balancing.
    pub call: CallPolicy,
    pub max_body_bytes: usize,
    /// Time the request body has to arrive whole (see [`crate::http::body_timeout`]).
    pub body_read_timeout: Duration,
    /// Largest upstream response body buffered for the chain; 502 beyond.
    pub max_response_body_bytes: usize,
    pub chain: Chain,
    /// This route's overrides of its listener's path policy.
    pub paths: PathPolicyOverride,
    /// Its request count and duration series, looked up once.
    pub series: RouteSeries,
}

/// The plugin limits a config asks for.
pub fn plugin_limits(config: &Config) -> PluginLimits {
    PluginLimits {
        call_timeout: Duration::from_millis(config.plugins.call_timeout_ms),
        memory_limit_bytes: (config.plugins.memory_limit_mb as usize) << 20,
        max_idle_instances: config.plugins.max_idle_instances,
        max_concurrent_calls: config.plugins.max_concurrent_calls,
        queue_timeout: Duration::from_millis(config.plugins.queue_timeout_ms),
        fault_breaker: config.plugins.fault_breaker,
    }
}

impl Gateway {
    /// Builds a generation: every plugin entry gets its own instance pool
    /// (with its own concurrency cap and fault breaker, which start afresh),
    /// initialised with its config now, so a config a plugin refuses fails
    /// the build instead of a request. Plugins missing from `catalog` are
    /// loaded into it. Upstreams whose config is the same as in `previous`
    /// (the generation being replaced) are taken over with their state.
    pub async fn build(
        config: Arc<Config>,
        previous: Option<&Gateway>,
        catalog: &mut PluginCatalog,
        runtime: &Arc<PluginRuntime>,
    ) -> Result<Gateway, PluginError> {
        let dir = config.plugin_dir();
        let limits = plugin_limits(&config);
        let upstreams: HashMap<String, Arc<Upstream>> = config
            .upstreams
            .iter()
            .map(|(name, u)| {
                let kept = previous.and_then(|p| p.upstreams.get(name));
                (name.clone(), Upstream::reuse_or_new(name, u, kept))
            })
            .collect();
        let mut routes = Vec::with_capacity(config.routes.len());
        for route in &config.routes {
            let mut steps = Vec::with_capacity(route.plugins.len());
            for entry in &route.plugins {
                if catalog.get(&entry.name).is_none() {
                    catalog
                        .load(runtime, &dir, &entry.name, Tier::Optimized)
                        .await?;
                }
                let compiled = catalog.get(&entry.name).expect("loaded above").clone();
                let grants = entry.grants().expect("checked when the config was parsed");
                let limits = PluginLimits {
                    max_concurrent_calls: entry
                        .max_concurrent_calls
                        .unwrap_or(limits.max_concurrent_calls),
                    fault_breaker: entry.fault_breaker.unwrap_or(limits.fault_breaker),
                    ..limits
                };
                let pool = runtime
                    .entry_pool(
                        compiled,
                        &route.name,
                        &entry.config,
                        entry.config_text.as_deref(),
                        limits,
                        Arc::new(grants),
                    )
                    .await?;
                steps.push(Step::new(Arc::new(pool), entry.on_error));
            }
            let upstream = upstreams[&route.upstream].clone();
            let max_body_bytes = route.max_body_bytes.unwrap_or(config.limits.max_body_bytes);
            routes.push(Route {
                name: route.name.as_str().into(),
                call: CallPolicy::for_route(route, &upstream, max_body_bytes),
                upstream,
                max_body_bytes,
                body_read_timeout: Duration::from_millis(
                    route
                        .body_read_timeout_ms
                        .unwrap_or(config.limits.body_read_timeout_ms),
                ),
                max_response_body_bytes: route
                    .max_response_body_bytes
                    .unwrap_or(config.limits.max_response_body_bytes),
                chain: Chain::new(steps),
                paths: route.paths,
                series: RouteSeries::new(&route.name),
            });
        }
        Ok(Gateway {
            router: Router::new(config.routes.iter().map(|r| &r.matcher)),
            strip: StripList::new(&config),
            trailers: Arc::new(crate::http::trailers::Policy::new(
                StripList::new(&config),
                config.limits.max_header_bytes,
            )),
            config,
            routes,
            upstreams,
        })
    }

    /// The path policy of the listener at `index` in the config (the
    /// top-level one for a listener the config no longer lists).
    pub fn listener_paths(&self, index: usize) -> PathPolicy {
        match self.config.listeners.get(index) {
            Some(listener) => self.config.paths.with(&listener.paths),
            None => self.config.paths,
        }
    }

    /// The route for a request, if any.
    pub fn route(
        &self,
        method: &http::Method,
        host: Option<&str>,
        path: &str,
        headers: &http::HeaderMap,
    ) -> Option<&Route> {
        self.router
            .find(method, host, path, headers)
            .map(|i| &self.routes[i])
    }

    /// Removes the identity headers a client must not send
    /// (`strip_request_headers`, see [`crate::http::identity_headers`]): run on
    /// every client request before routing.
    pub fn strip_forgeable_headers(&self, headers: &mut http::HeaderMap) {
        self.strip.strip(headers);
    }

    /// Names of the plugins any route uses.
    pub fn plugin_names(&self) -> impl Iterator<Item = &str> {
        self.config
            .routes
            .iter()
            .flat_map(|r| r.plugins.iter().map(|p| p.name.as_str()))
    }
}
