//! The gateway's own Prometheus series, in one process-wide registry that
//! plugin-defined metrics join too (exported by the admin listener).
//!
//! Names are what `examples/grafana/wasmgate.json` queries; rename one and
//! the dashboard test fails.

use crate::plugin::host::kv::{KvCallMetrics, KvMetrics};
use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use std::sync::LazyLock;

/// Series operators graph and alert on.
pub struct GatewayMetrics {
    pub registry: Registry,
    /// Plugin faults by plugin and kind (trap, deadline, memory, config, invalid_output).
    pub plugin_faults: IntCounterVec,
    /// What the host refused a plugin, by plugin, capability or hook output
    /// (`what`) and reason (see `plugin::bounds`).
    pub plugin_refusals: IntCounterVec,
    /// Hot-reload attempts by result (ok, error).
    pub reloads: IntCounterVec,
    /// Requests answered, by route and status class (`2xx`…`5xx`).
    pub requests: IntCounterVec,
    /// Time from request head to response head, by route.
    pub request_duration: HistogramVec,
    /// Time an upstream took to answer with its response head, by upstream.
    pub upstream_duration: HistogramVec,
    /// Wall time of one plugin hook call, by plugin and phase.
    pub plugin_call_duration: HistogramVec,
    /// Open client connections, by listener address.
    pub active_connections: IntGaugeVec,
    /// 1 while a route entry's fault breaker is open (or probing), by route and plugin.
    pub plugin_breaker_open: IntGaugeVec,
    /// Times a route entry's fault breaker tripped, by route and plugin.
    pub plugin_breaker_trips: IntCounterVec,
    /// Plugin calls not run, by route, plugin and reason (`busy`, `breaker_open`).
    pub plugin_calls_rejected: IntCounterVec,
    /// The kv store's size and evictions, by namespace (plugin).
    pub kv: KvMetrics,
    /// The kv store's whole budget (`kv.max_bytes`).
    pub kv_max_bytes: IntGauge,
    /// The Redis kv backend's call times, errors and reachability.
    pub kv_redis: KvCallMetrics,
}

/// Plugin calls take microseconds; the default buckets start at 5 ms.
const PLUGIN_CALL_BUCKETS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25,
];

/// kv calls to Redis take a fraction of a millisecond on a LAN; the
/// buckets reach up to the longest sensible `kv.redis.timeout_ms`.
const KV_CALL_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// The route label of a request no route matched.
pub const NO_ROUTE: &str = "_unmatched";

/// Creates the gateway's own series and registers them in one registry.
/// Each is registered once, at first use, with a name and labels written in
/// the code, so a failure here is a bug and panics.
pub struct Series<'a>(pub &'a Registry);

impl Series<'_> {
    fn register<C: prometheus::core::Collector + Clone + 'static>(&self, collector: C) -> C {
        self.0
            .register(Box::new(collector.clone()))
            .expect("each gateway series is registered once");
        collector
    }

    /// A counter family.
    pub fn counter(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.register(IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"))
    }

    /// A gauge family.
    pub fn gauge(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.register(IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"))
    }

    /// A single gauge without labels.
    pub fn single_gauge(&self, name: &str, help: &str) -> IntGauge {
        self.register(IntGauge::new(name, help).expect("valid metric"))
    }

    /// A histogram family; `buckets` replaces the default ones (5 ms to 10 s).
    pub fn histogram(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: Option<&[f64]>,
    ) -> HistogramVec {
        let mut opts = HistogramOpts::new(name, help);
        if let Some(buckets) = buckets {
            opts = opts.buckets(buckets.to_vec());
        }
        self.register(HistogramVec::new(opts, labels).expect("valid metric"))
    }
}

static METRICS: LazyLock<GatewayMetrics> = LazyLock::new(|| {
    let registry = Registry::new();
    let series = Series(&registry);
    let kv_max_bytes = series.single_gauge("wasmgate_kv_max_bytes", "The kv store's memory budget");
    let kv_redis_up = series.single_gauge(
        "wasmgate_kv_redis_up",
        "1 while the Redis kv backend answers, 0 during an outage",
    );
    GatewayMetrics {
        plugin_faults: series.counter(
            "wasmgate_plugin_faults_total",
            "Plugin calls that trapped, timed out or broke their memory cap",
            &["plugin", "kind"],
        ),
        plugin_refusals: series.counter(
            "wasmgate_plugin_refusals_total",
            "Capability calls and hook results the host refused a plugin",
            &["plugin", "what", "reason"],
        ),
        reloads: series.counter(
            "wasmgate_reloads_total",
            "Hot-reload attempts of the config or plugin files",
            &["result"],
        ),
        requests: series.counter(
            "wasmgate_requests_total",
            "Requests answered, by route and status class",
            &["route", "status_class"],
        ),
        request_duration: series.histogram(
            "wasmgate_request_duration_seconds",
            "Time from request head to response head",
            &["route"],
            None,
        ),
        upstream_duration: series.histogram(
            "wasmgate_upstream_duration_seconds",
            "Time an upstream took to answer with its response head",
            &["upstream"],
            None,
        ),
        plugin_call_duration: series.histogram(
            "wasmgate_plugin_call_duration_seconds",
            "Wall time of one plugin hook call",
            &["plugin", "phase"],
            Some(PLUGIN_CALL_BUCKETS),
        ),
        active_connections: series.gauge(
            "wasmgate_active_connections",
            "Client connections currently open",
            &["listener"],
        ),
        plugin_breaker_open: series.gauge(
            "wasmgate_plugin_breaker_open",
            "1 while a route entry's plugin fault breaker is open or probing",
            &["route", "plugin"],
        ),
        plugin_breaker_trips: series.counter(
            "wasmgate_plugin_breaker_trips_total",
            "Times a route entry's plugin fault breaker tripped",
            &["route", "plugin"],
        ),
        plugin_calls_rejected: series.counter(
            "wasmgate_plugin_calls_rejected_total",
            "Plugin calls not run: breaker open, or the entry's concurrency cap full",
            &["route", "plugin", "reason"],
        ),
        kv: KvMetrics {
            bytes: series.gauge(
                "wasmgate_kv_bytes",
                "Bytes held by the kv store (keys, values, bookkeeping), by namespace",
                &["namespace"],
            ),
            entries: series.gauge(
                "wasmgate_kv_entries",
                "Entries held by the kv store, by namespace",
                &["namespace"],
            ),
            evictions: series.counter(
                "wasmgate_kv_evictions_total",
                "kv entries removed because they expired or to stay within budget (lru)",
                &["namespace", "reason"],
            ),
        },
        kv_max_bytes,
        kv_redis: KvCallMetrics {
            duration: series.histogram(
                "wasmgate_kv_redis_call_duration_seconds",
                "Time of one kv call to Redis, by operation",
                &["op"],
                Some(KV_CALL_BUCKETS),
            ),
            errors: series.counter(
                "wasmgate_kv_redis_errors_total",
                "kv calls to Redis that failed, by operation and reason (timeout, unavailable, error)",
                &["op", "reason"],
            ),
            up: kv_redis_up,
        },
        registry,
    }
});

impl GatewayMetrics {
    /// Every series name the gateway's own families expose (a histogram's
    /// `_bucket`, `_sum` and `_count` too), so plugin metrics can be kept
    /// off them.
    pub fn series_names(&self) -> Vec<String> {
        use prometheus::core::Collector;
        let single = [
            self.plugin_faults.desc(),
            self.plugin_refusals.desc(),
            self.reloads.desc(),
            self.requests.desc(),
            self.active_connections.desc(),
        ];
        let histograms = [
            self.request_duration.desc(),
            self.upstream_duration.desc(),
            self.plugin_call_duration.desc(),
        ];
        let names = |descs: &[Vec<&prometheus::core::Desc>]| -> Vec<String> {
            descs.iter().flatten().map(|d| d.fq_name.clone()).collect()
        };
        let mut all = names(&single);
        for name in names(&histograms) {
            all.extend(histogram_series(&name));
        }
        all
    }
}

/// The series names a histogram family called `name` exposes.
pub fn histogram_series(name: &str) -> [String; 4] {
    [
        name.to_string(),
        format!("{name}_bucket"),
        format!("{name}_sum"),
        format!("{name}_count"),
    ]
}

/// The process-wide metrics.
pub fn metrics() -> &'static GatewayMetrics {
    &METRICS
}

/// `2xx`, `4xx`… for a status code.
pub fn status_class(status: http::StatusCode) -> &'static str {
    STATUS_CLASSES[status_class_index(status)]
}

/// The status classes, in the order of [`status_class_index`].
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The index of a status's class in [`STATUS_CLASSES`].
fn status_class_index(status: http::StatusCode) -> usize {
    match status.as_u16() {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    }
}

/// One route's request series, looked up once when the route is built
/// rather than by label on every request.
pub struct RouteSeries {
    requests: [prometheus::IntCounter; 5],
    duration: prometheus::Histogram,
}

impl RouteSeries {
    /// The series of the route named `route`.
    pub fn new(route: &str) -> RouteSeries {
        let m = metrics();
        RouteSeries {
            requests: STATUS_CLASSES.map(|class| m.requests.with_label_values(&[route, class])),
            duration: m.request_duration.with_label_values(&[route]),
        }
    }

    /// Counts one answered request and how long it took.
    pub fn observe(&self, status: http::StatusCode, duration: std::time::Duration) {
        self.requests[status_class_index(status)].inc();
        self.duration.observe(duration.as_secs_f64());
    }
}

/// Counts one open connection in a gauge for as long as it lives.
pub struct ConnectionGauge(IntGauge);

impl ConnectionGauge {
    /// Increments `gauge`; dropping the guard decrements it.
    pub fn open(gauge: IntGauge) -> ConnectionGauge {
        gauge.inc();
        ConnectionGauge(gauge)
    }
}

impl Drop for ConnectionGauge {
    fn drop(&mut self) {
        self.0.dec();
    }
}
