//! The admin listener: what an operator (or Prometheus, or a load balancer's
//! health check) asks the gateway, on its own address.
//!
//! - `GET /metrics`: Prometheus text format.
//! - `GET /healthz`: the process is up.
//! - `GET /readyz`: a config and its plugins are loaded and serving, and
//!   every upstream has at least one healthy target (503 otherwise); with
//!   `kv.redis.required_for_ready`, Redis answers too.
//! - `GET /admin/routes`: the serving routes as JSON.
//! - `GET /admin/plugins`: each loaded plugin's hash, size, contract version,
//!   load time and last reload error, and each route entry running it (calls
//!   in flight against its cap, fault breaker state), as JSON.
//! - `GET /admin/upstreams`: each upstream's balancing, circuit state and
//!   targets (weight, healthy, ejected, in flight), as JSON.
//! - `GET /`: the dashboard page; `GET /admin/stats` (traffic per route over
//!   the last minutes, fault counts) and `GET /admin/events` (recent reloads
//!   and plugin faults) feed it (see [`crate::admin::dashboard`]).
//!
//! With `admin.token` set, everything but `/healthz` and `/readyz` needs
//! `Authorization: Bearer <token>` (the page also takes `?token=`, and
//! passes it on to the endpoints it polls).
//!
//! Lives here: the admin routes and the [`dashboard`]. May use the gateway
//! generation, `reload` (events), `upstream::report` and `observe`.

pub mod dashboard;

use crate::gateway::Shared;
use crate::http::accept;
use crate::http::body::{full, json_error, Body};
use crate::reload::Reloader;
use crate::upstream;
use http::{Method, Response, StatusCode};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::json;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::UNIX_EPOCH;
use tokio::net::TcpListener;

/// Serves the admin API until the task is dropped; samples traffic for the
/// dashboard meanwhile.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    reloader: Arc<Reloader>,
    token: Option<Arc<str>>,
) {
    tokio::select! {
        () = accept_loop(listener, shared, reloader, token) => {}
        () = crate::admin::dashboard::traffic::sample_forever() => {}
    }
}

/// Accepts admin connections; a failed accept pauses ([`accept::BACKOFF`])
/// instead of spinning.
async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    reloader: Arc<Reloader>,
    token: Option<Arc<str>>,
) {
    loop {
        let (stream, _) = accept::next(&listener, "admin listener").await;
        let (shared, reloader, token) = (shared.clone(), reloader.clone(), token.clone());
        tokio::spawn(async move {
            let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let (shared, reloader, token) = (shared.clone(), reloader.clone(), token.clone());
                async move {
                    let path = request.uri().path();
                    let open = matches!(path, "/healthz" | "/readyz");
                    if !open && !authorized(&request, token.as_deref()) {
                        return Ok::<_, Infallible>(json_error(
                            StatusCode::UNAUTHORIZED,
                            "unauthorized",
                            "the admin API needs `Authorization: Bearer <admin.token>`",
                        ));
                    }
                    Ok::<_, Infallible>(answer(request.method(), path, &shared, &reloader).await)
                }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(
    method: &Method,
    path: &str,
    shared: &Shared,
    reloader: &Reloader,
) -> Response<Body> {
    if method != Method::GET {
        return json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "the admin API is read-only",
        );
    }
    match path {
        "/metrics" => {
            upstream::report::refresh(&shared.upstreams);
            metrics()
        }
        "/healthz" => json(json!({"status": "ok"})),
        "/readyz" => ready(shared),
        "/admin/upstreams" => json(upstream::report::json(&shared.upstreams)),
        "/admin/routes" => routes(shared),
        "/admin/plugins" => plugins(shared, reloader).await,
        "/" => crate::admin::dashboard::page(),
        "/admin/stats" => json(crate::admin::dashboard::stats(shared)),
        "/admin/events" => json(crate::admin::dashboard::events(reloader)),
        _ => json_error(StatusCode::NOT_FOUND, "not_found", "no such admin endpoint"),
    }
}

/// Whether `request` carries the admin token (always, without one): in the
/// `Authorization: Bearer` header, or for the dashboard page in `?token=`.
fn authorized<B>(request: &http::Request<B>, token: Option<&str>) -> bool {
    let Some(token) = token else { return true };
    let bearer = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let query = (request.uri().path() == "/")
        .then(|| request.uri().query())
        .flatten()
        .and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "token")
                .map(|(_, v)| v.into_owned())
        });
    bearer
        .map(str::to_string)
        .or(query)
        .is_some_and(|given| same_secret(given.as_bytes(), token.as_bytes()))
}

/// Compares two secrets in time that does not depend on where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn json(value: serde_json::Value) -> Response<Body> {
    Response::builder()
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(full(value.to_string()))
        .expect("static response parts are valid")
}

/// Ready when every upstream has a target that may get traffic, and Redis
/// answers if the config makes readiness depend on it
/// (`kv.redis.required_for_ready`).
fn ready(shared: &Shared) -> Response<Body> {
    let unhealthy = upstream::report::unready(&shared.upstreams);
    let kv_down = shared.kv_readiness.as_ref().is_some_and(|kv| !kv.is_up());
    let routes = shared.gateway.load().routes.len();
    let mut body = if unhealthy.is_empty() && !kv_down {
        json!({"status": "ready", "routes": routes})
    } else {
        json!({"status": "not_ready", "routes": routes})
    };
    if !unhealthy.is_empty() {
        body["unhealthy_upstreams"] = json!(unhealthy);
    }
    if kv_down {
        body["kv"] = json!("redis unreachable");
    }
    let mut response = json(body);
    if !unhealthy.is_empty() || kv_down {
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    }
    response
}

fn metrics() -> Response<Body> {
    let families = crate::observe::metrics::metrics().registry.gather();
    match prometheus::TextEncoder::new().encode_to_string(&families) {
        Ok(text) => Response::builder()
            .header(http::header::CONTENT_TYPE, prometheus::TEXT_FORMAT)
            .body(full(text))
            .expect("static response parts are valid"),
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, "metrics", &e.to_string()),
    }
}

fn routes(shared: &Shared) -> Response<Body> {
    let gateway = shared.gateway.load();
    let routes: Vec<_> = gateway
        .config
        .routes
        .iter()
        .map(|r| {
            let m = &r.matcher;
            json!({
                "name": r.name,
                "match": {"host": m.host, "path": m.path, "path_prefix": m.path_prefix, "methods": m.methods, "headers": m.headers},
                "upstream": r.upstream,
                "plugins": r.plugins.iter().map(|p| json!({"name": p.name, "on_error": format!("{:?}", p.on_error), "allow": p.allow})).collect::<Vec<_>>(),
            })
        })
        .collect();
    json(json!(routes))
}

/// Each route entry running a plugin: its place, calls in flight against
/// its cap, and its fault breaker.
fn plugin_entries(shared: &Shared) -> Vec<(String, serde_json::Value)> {
    use crate::plugin::guard::BreakerState;
    let gateway = shared.gateway.load();
    let mut entries = Vec::new();
    for route in &gateway.routes {
        for (position, step) in route.chain.steps().iter().enumerate() {
            let status = step.pool.guard().status();
            let (state, retry_after_ms) = match status.breaker {
                BreakerState::Closed => ("closed", None),
                BreakerState::Open { retry_after } => {
                    ("open", Some(retry_after.as_millis() as u64))
                }
                BreakerState::HalfOpen => ("half_open", None),
            };
            entries.push((
                step.pool.name().to_string(),
                json!({
                    "route": &*route.name,
                    "position": position,
                    "in_flight": status.in_flight,
                    "max_concurrent_calls": status.max_concurrent_calls,
                    "breaker": {
                        "state": state,
                        "retry_after_ms": retry_after_ms,
                        "recent_faults": status.recent_faults,
                        "trips": status.trips,
                    },
                }),
            ));
        }
    }
    entries
}

async fn plugins(shared: &Shared, reloader: &Reloader) -> Response<Body> {
    let catalog = reloader.catalog().await;
    let errors = reloader.plugin_errors();
    let entries = plugin_entries(shared);
    let mut plugins: Vec<_> = catalog
        .iter()
        .map(|(name, p)| {
            json!({
                "name": name,
                "file": crate::plugin::catalog::plugin_path(&shared.gateway.load().config.plugin_dir(), name),
                "content_hash": format!("{:016x}", p.content_hash),
                "size_bytes": p.size_bytes,
                "contract_version": p.contract_version,
                "abi": p.abi(),
                "tier": p.tier.as_str(),
                "loaded_at": p.loaded_at.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default(),
                "last_reload_error": errors.get(name.as_str()),
                "entries": entries.iter().filter(|(n, _)| n == name).map(|(_, e)| e).collect::<Vec<_>>(),
            })
        })
        .collect();
    plugins.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    json(json!(plugins))
}
