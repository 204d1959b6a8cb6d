//! Where plugin logs and metrics land in the gateway: `tracing` events tagged
//! with plugin and route, and Prometheus series labelled with the plugin.
//!
//! A metric update reaches here within `plugin::bounds` (valid, unreserved
//! label names; a finite value). What only the registry can tell is checked
//! here, and refused the same way (counted, logged once a minute per plugin
//! and reason): a name another family (the gateway's own included) already
//! exposes, a label set other than the family's, too many families for one
//! plugin or too many series in one. Nothing under the lock can panic, and
//! a poisoned lock would be recovered, so one plugin can never disable the
//! metrics of the others.

use crate::plugin::bounds::{sanitise_metric_name, Refusal};
use crate::plugin::component::bindings::LogLevel;
use crate::plugin::Telemetry;
use prometheus::{CounterVec, GaugeVec, HistogramOpts, HistogramVec, Opts, Registry};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

/// Metric families one plugin may create.
pub const MAX_FAMILIES_PER_PLUGIN: usize = 64;
/// Label-value combinations one plugin may fill in one family.
pub const MAX_SERIES_PER_PLUGIN: usize = 1000;

/// The gateway's [`Telemetry`]: logs through `tracing`, metrics into a registry.
pub struct GatewayTelemetry {
    registry: Registry,
    families: Mutex<Families>,
    /// Tells this telemetry's entries in the per-thread [`ADMITTED`] cache
    /// from another's (tests make several).
    id: u64,
}

/// One series a thread has already recorded into: the update as the plugin
/// sent it, and the series' handle.
struct Admitted {
    telemetry: u64,
    plugin: String,
    name: String,
    kind: Kind,
    labels: Vec<(String, String)>,
    series: Series,
}

/// A series handle of any kind.
enum Series {
    Counter(prometheus::Counter),
    Histogram(prometheus::Histogram),
    Gauge(prometheus::Gauge),
}

impl Series {
    fn record(&self, value: f64) {
        match self {
            Series::Counter(counter) => counter.inc_by(value),
            Series::Histogram(histogram) => histogram.observe(value),
            Series::Gauge(gauge) => gauge.set(value),
        }
    }
}

/// Updates one thread remembers at most: a plugin that spells one series
/// many ways (label order, names that sanitise alike) must not grow the
/// cache without bound; past it, updates take the checked path.
pub const MAX_ADMITTED_PER_THREAD: usize = 4096;

/// The series a thread recorded into, by a hash of the update.
#[derive(Default)]
struct AdmittedCache {
    by_hash: HashMap<u64, Vec<Admitted>>,
    entries: usize,
}

thread_local! {
    /// This thread's [`AdmittedCache`]: a plugin that counts every request
    /// takes the checks and the registry's lock once per series and thread,
    /// not per request (they were ~4 k instructions per update,
    /// `bench/instructions.sh`). A series, once admitted, stays valid:
    /// families are never removed or relabelled.
    static ADMITTED: RefCell<AdmittedCache> = RefCell::default();
}

#[derive(Default)]
struct Families {
    /// By full name (`wasmgate_plugin_<name>`).
    by_name: HashMap<String, Family>,
    /// Every series name exposed so far, the gateway's own included: a new
    /// family may not expose one again (a histogram `x` and a counter
    /// `x_sum` would make a scrape ambiguous).
    taken: HashSet<String>,
    /// How many families each plugin created.
    created: HashMap<String, usize>,
}

struct Family {
    vec: FamilyVec,
    /// The plugin's label names, sanitised and sorted (after `plugin`).
    labels: Vec<String>,
    /// Hashes of the label values each plugin has filled in.
    series: HashMap<String, HashSet<u64>>,
}

enum FamilyVec {
    Counter(CounterVec),
    Histogram(HistogramVec),
    Gauge(GaugeVec),
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Counter,
    Histogram,
    Gauge,
}

impl GatewayTelemetry {
    /// Telemetry recording plugin metrics into `registry`; it must be the
    /// only one recording into it (see [`GatewayTelemetry::process_wide`]).
    pub fn new(registry: Registry) -> Self {
        let families = Families {
            taken: crate::observe::metrics::metrics()
                .series_names()
                .into_iter()
                .collect(),
            ..Families::default()
        };
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        GatewayTelemetry {
            registry,
            families: Mutex::new(families),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The telemetry of the process-wide registry (`metrics::metrics()`),
    /// shared by every gateway in the process: which plugin families exist
    /// is a fact about the registry, so the bookkeeping is shared with it.
    pub fn process_wide() -> Arc<GatewayTelemetry> {
        static SHARED: LazyLock<Arc<GatewayTelemetry>> = LazyLock::new(|| {
            Arc::new(GatewayTelemetry::new(
                crate::observe::metrics::metrics().registry.clone(),
            ))
        });
        SHARED.clone()
    }

    /// The registry plugin metrics are recorded in.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Records one update into a series this thread has seen (see
    /// [`ADMITTED`]), or else through [`GatewayTelemetry::admit`].
    fn record(
        &self,
        plugin: &str,
        name: &str,
        kind: Kind,
        value: f64,
        labels: &[(String, String)],
    ) -> Result<(), Refusal> {
        let key = {
            let mut hasher = std::hash::DefaultHasher::new();
            (self.id, plugin, name, kind, labels).hash(&mut hasher);
            hasher.finish()
        };
        let is_update = |a: &Admitted| {
            a.telemetry == self.id
                && a.plugin == plugin
                && a.name == name
                && a.kind == kind
                && a.labels == labels
        };
        let hit = ADMITTED.with_borrow(|admitted| {
            let series = admitted.by_hash.get(&key)?.iter().find(|a| is_update(a))?;
            series.series.record(value);
            Some(())
        });
        if hit.is_some() {
            return Ok(());
        }
        let series = self.admit(plugin, name, kind, labels)?;
        series.record(value);
        ADMITTED.with_borrow_mut(|admitted| {
            if admitted.entries >= MAX_ADMITTED_PER_THREAD {
                return;
            }
            admitted.entries += 1;
            admitted.by_hash.entry(key).or_default().push(Admitted {
                telemetry: self.id,
                plugin: plugin.to_string(),
                name: name.to_string(),
                kind,
                labels: labels.to_vec(),
                series,
            });
        });
        Ok(())
    }

    /// The series an update goes to, checked against the registry (name,
    /// labels, limits), or why it is refused.
    fn admit(
        &self,
        plugin: &str,
        name: &str,
        kind: Kind,
        labels: &[(String, String)],
    ) -> Result<Series, Refusal> {
        let refuse = |reason, detail: String| Err(Refusal::new("metrics", reason, detail));
        let full = format!("wasmgate_plugin_{}", sanitise_metric_name(name));
        let mut sorted: Vec<(String, &str)> = labels
            .iter()
            .map(|(k, v)| (sanitise_metric_name(k), v.as_str()))
            .collect();
        sorted.sort();
        let mut families = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        let families = &mut *families;
        if !families.by_name.contains_key(&full) {
            let family = self.create(families, plugin, name, &full, kind, &sorted)?;
            families.by_name.insert(full.clone(), family);
        }
        let Some(family) = families.by_name.get_mut(&full) else {
            return refuse("invalid_name", format!("`{full}` could not be created"));
        };
        if !family
            .labels
            .iter()
            .map(String::as_str)
            .eq(sorted.iter().map(|(k, _)| k.as_str()))
        {
            return refuse(
                "label_mismatch",
                format!(
                    "`{full}` has labels {:?}, not {:?}",
                    family.labels,
                    sorted.iter().map(|(k, _)| k).collect::<Vec<_>>()
                ),
            );
        }
        let mut values: Vec<&str> = Vec::with_capacity(sorted.len() + 1);
        values.push(plugin);
        values.extend(sorted.iter().map(|(_, v)| *v));
        let hash = {
            let mut hasher = std::hash::DefaultHasher::new();
            values.hash(&mut hasher);
            hasher.finish()
        };
        if !family.series.contains_key(plugin) {
            family.series.insert(plugin.to_string(), HashSet::new());
        }
        let Some(series) = family.series.get_mut(plugin) else {
            return refuse("invalid_name", format!("`{full}` has no series"));
        };
        if !series.contains(&hash) {
            if series.len() >= MAX_SERIES_PER_PLUGIN {
                return refuse(
                    "too_many_series",
                    format!("more than {MAX_SERIES_PER_PLUGIN} label combinations in `{full}`"),
                );
            }
            series.insert(hash);
        }
        let series = match (&family.vec, kind) {
            (FamilyVec::Counter(vec), Kind::Counter) => vec
                .get_metric_with_label_values(&values)
                .map(Series::Counter),
            (FamilyVec::Histogram(vec), Kind::Histogram) => vec
                .get_metric_with_label_values(&values)
                .map(Series::Histogram),
            (FamilyVec::Gauge(vec), Kind::Gauge) => {
                vec.get_metric_with_label_values(&values).map(Series::Gauge)
            }
            _ => {
                return refuse(
                    "name_taken",
                    format!("`{full}` is already a metric of another type"),
                )
            }
        };
        series.or_else(|e| refuse("invalid_label", format!("`{full}`: {e}")))
    }

    /// A new family `full` for `plugin`, registered, or why not.
    fn create(
        &self,
        families: &mut Families,
        plugin: &str,
        name: &str,
        full: &str,
        kind: Kind,
        sorted: &[(String, &str)],
    ) -> Result<Family, Refusal> {
        let refuse = |reason, detail: String| Err(Refusal::new("metrics", reason, detail));
        let created = families.created.get(plugin).copied().unwrap_or(0);
        if created >= MAX_FAMILIES_PER_PLUGIN {
            return refuse(
                "too_many_metrics",
                format!("more than {MAX_FAMILIES_PER_PLUGIN} metrics; `{full}` refused"),
            );
        }
        let series_names: Vec<String> = match kind {
            Kind::Counter | Kind::Gauge => vec![full.to_string()],
            Kind::Histogram => crate::observe::metrics::histogram_series(full).to_vec(),
        };
        if let Some(taken) = series_names.iter().find(|s| families.taken.contains(*s)) {
            return refuse(
                "name_taken",
                format!("`{taken}` is already exposed by another metric"),
            );
        }
        let labels: Vec<String> = sorted.iter().map(|(k, _)| k.clone()).collect();
        let names: Vec<&str> = std::iter::once("plugin")
            .chain(labels.iter().map(String::as_str))
            .collect();
        let (vec, collector): (FamilyVec, Box<dyn prometheus::core::Collector>) = match kind {
            Kind::Counter => {
                let opts = Opts::new(full, format!("plugin counter {name}"));
                match CounterVec::new(opts, &names) {
                    Ok(vec) => (FamilyVec::Counter(vec.clone()), Box::new(vec)),
                    Err(e) => return refuse("invalid_name", format!("`{full}`: {e}")),
                }
            }
            Kind::Histogram => {
                let opts = HistogramOpts::new(full, format!("plugin histogram {name}"));
                match HistogramVec::new(opts, &names) {
                    Ok(vec) => (FamilyVec::Histogram(vec.clone()), Box::new(vec)),
                    Err(e) => return refuse("invalid_name", format!("`{full}`: {e}")),
                }
            }
            Kind::Gauge => {
                let opts = Opts::new(full, format!("plugin gauge {name}"));
                match GaugeVec::new(opts, &names) {
                    Ok(vec) => (FamilyVec::Gauge(vec.clone()), Box::new(vec)),
                    Err(e) => return refuse("invalid_name", format!("`{full}`: {e}")),
                }
            }
        };
        if let Err(e) = self.registry.register(collector) {
            return refuse("name_taken", format!("`{full}`: {e}"));
        }
        families.taken.extend(series_names);
        *families.created.entry(plugin.to_string()).or_default() += 1;
        Ok(Family {
            vec,
            labels,
            series: HashMap::new(),
        })
    }
}

impl Telemetry for GatewayTelemetry {
    fn log(
        &self,
        plugin: &str,
        route: &str,
        level: LogLevel,
        message: &str,
        fields: &[(String, String)],
    ) {
        let fields = fields
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        let message = one_line(message);
        match level {
            LogLevel::Trace => tracing::trace!(plugin, route, fields, "{message}"),
            LogLevel::Debug => tracing::debug!(plugin, route, fields, "{message}"),
            LogLevel::Info => tracing::info!(plugin, route, fields, "{message}"),
            LogLevel::Warn => tracing::warn!(plugin, route, fields, "{message}"),
            LogLevel::Error => tracing::error!(plugin, route, fields, "{message}"),
        }
    }

    fn counter_add(&self, plugin: &str, name: &str, value: u64, labels: &[(String, String)]) {
        if let Err(refusal) = self.record(plugin, name, Kind::Counter, value as f64, labels) {
            refusal.report(plugin);
        }
    }

    fn histogram_observe(&self, plugin: &str, name: &str, value: f64, labels: &[(String, String)]) {
        if let Err(refusal) = self.record(plugin, name, Kind::Histogram, value, labels) {
            refusal.report(plugin);
        }
    }

    fn gauge_set(&self, plugin: &str, name: &str, value: f64, labels: &[(String, String)]) {
        if let Err(refusal) = self.record(plugin, name, Kind::Gauge, value, labels) {
            refusal.report(plugin);
        }
    }
}

/// A plugin's log message with its control characters escaped (`\n` as
/// the two characters `\` `n`): the message is often client data, and must
/// not start a line of its own in the gateway's log.
fn one_line(message: &str) -> std::borrow::Cow<'_, str> {
    if !message.contains(char::is_control) {
        return message.into();
    }
    let mut escaped = String::with_capacity(message.len() + 8);
    for c in message.chars() {
        if c.is_control() {
            escaped.extend(c.escape_default());
        } else {
            escaped.push(c);
        }
    }
    escaped.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::Encoder;

    #[test]
    fn a_plugin_message_cannot_forge_a_line_of_the_gateway_log() {
        let written = Arc::new(Mutex::new(Vec::new()));
        let sink = written.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || WriteTo(sink.clone()))
            .finish();
        let telemetry = GatewayTelemetry::new(Registry::new());
        tracing::subscriber::with_default(subscriber, || {
            telemetry.log(
                "p",
                "r",
                LogLevel::Warn,
                "user=x\r\n2026-01-01T00:00:00Z ERROR wasmgate: forged",
                &[],
            );
        });
        let text = String::from_utf8(written.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("user=x\\r\\n2026"), "{text}");
    }

    /// A `MakeWriter` target the test reads back.
    struct WriteTo(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for WriteTo {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn labels(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn scrape(telemetry: &GatewayTelemetry) -> String {
        let mut out = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&telemetry.registry().gather(), &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    fn reason(result: Result<(), Refusal>) -> &'static str {
        result.map(|()| "ok").unwrap_or_else(|r| r.reason)
    }

    #[test]
    fn what_only_the_registry_can_tell_is_refused_and_others_go_on() {
        let telemetry = GatewayTelemetry::new(Registry::new());
        let record = |plugin, name, kind, labels_: &[(&str, &str)]| {
            reason(telemetry.record(plugin, name, kind, 1.0, &labels(labels_)))
        };
        assert_eq!(record("p", "hits", Kind::Counter, &[("route", "r")]), "ok");
        assert_eq!(
            record("p", "hits", Kind::Counter, &[("other", "r")]),
            "label_mismatch"
        );
        assert_eq!(
            record("p", "hits", Kind::Histogram, &[("route", "r")]),
            "name_taken"
        );
        assert_eq!(record("p", "lat", Kind::Histogram, &[]), "ok");
        assert_eq!(record("p", "lat_sum", Kind::Counter, &[]), "name_taken");
        assert_eq!(record("p", "hits_count", Kind::Histogram, &[]), "ok");
        assert_eq!(
            record("p", "faults_total", Kind::Counter, &[]),
            "name_taken",
            "the gateway's own wasmgate_plugin_faults_total"
        );
        assert_eq!(
            record("p", "call_duration_seconds_count", Kind::Counter, &[]),
            "name_taken"
        );
        for i in 0..MAX_SERIES_PER_PLUGIN - 1 {
            let value = i.to_string();
            assert_eq!(
                record("p", "hits", Kind::Counter, &[("route", &value)]),
                "ok"
            );
        }
        assert_eq!(
            record("p", "hits", Kind::Counter, &[("route", "one-too-many")]),
            "too_many_series"
        );
        assert_eq!(record("p", "hits", Kind::Counter, &[("route", "r")]), "ok");
        assert_eq!(
            record("q", "hits", Kind::Counter, &[("route", "q's own")]),
            "ok",
            "series are counted per plugin"
        );
        let text = scrape(&telemetry);
        assert!(
            text.contains(r#"wasmgate_plugin_hits{plugin="q",route="q's own"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn repeated_updates_of_a_series_add_up_however_its_labels_are_ordered() {
        let telemetry = GatewayTelemetry::new(Registry::new());
        let ab = labels(&[("a", "1"), ("b", "2")]);
        for _ in 0..3 {
            telemetry.counter_add("p", "hits", 1, &ab);
        }
        telemetry.counter_add("p", "hits", 1, &labels(&[("b", "2"), ("a", "1")]));
        let other = GatewayTelemetry::new(Registry::new());
        other.counter_add("p", "hits", 5, &ab);
        assert!(
            scrape(&telemetry).contains(r#"wasmgate_plugin_hits{a="1",b="2",plugin="p"} 4"#),
            "{}",
            scrape(&telemetry)
        );
        assert!(
            scrape(&other).contains(r#"wasmgate_plugin_hits{a="1",b="2",plugin="p"} 5"#),
            "another telemetry's cached series is its own"
        );
    }

    #[test]
    fn the_per_thread_cache_is_bounded_and_updates_past_it_still_count() {
        let telemetry = GatewayTelemetry::new(Registry::new());
        let plugins = MAX_ADMITTED_PER_THREAD / MAX_SERIES_PER_PLUGIN + 1;
        for round in 0..2 {
            for p in 0..plugins {
                for i in 0..MAX_SERIES_PER_PLUGIN {
                    let value = i.to_string();
                    let result = telemetry.record(
                        &format!("p{p}"),
                        "hits",
                        Kind::Counter,
                        1.0,
                        &labels(&[("n", &value)]),
                    );
                    assert_eq!(reason(result), "ok", "round {round}, p{p}, {i}");
                }
            }
        }
        let cached = ADMITTED.with_borrow(|admitted| admitted.entries);
        assert_eq!(cached, MAX_ADMITTED_PER_THREAD);
        let last = format!(
            r#"wasmgate_plugin_hits{{n="{}",plugin="p{}"}} 2"#,
            MAX_SERIES_PER_PLUGIN - 1,
            plugins - 1
        );
        assert!(scrape(&telemetry).contains(&last), "{last}");
    }

    #[test]
    fn a_gauge_is_set_not_added_and_keeps_its_type() {
        let telemetry = GatewayTelemetry::new(Registry::new());
        telemetry.gauge_set("p", "depth", 5.0, &[]);
        telemetry.gauge_set("p", "depth", 2.0, &[]);
        assert!(scrape(&telemetry).contains(
            "# TYPE wasmgate_plugin_depth gauge\nwasmgate_plugin_depth{plugin=\"p\"} 2\n"
        ));
        assert_eq!(
            reason(telemetry.record("p", "depth", Kind::Counter, 1.0, &[])),
            "name_taken"
        );
    }

    #[test]
    fn a_plugin_creates_a_bounded_number_of_metrics() {
        let telemetry = GatewayTelemetry::new(Registry::new());
        for i in 0..MAX_FAMILIES_PER_PLUGIN {
            let name = format!("m{i}");
            assert_eq!(
                reason(telemetry.record("p", &name, Kind::Counter, 1.0, &[])),
                "ok"
            );
        }
        assert_eq!(
            reason(telemetry.record("p", "one_more", Kind::Counter, 1.0, &[])),
            "too_many_metrics"
        );
        assert_eq!(
            reason(telemetry.record("q", "one_more", Kind::Counter, 1.0, &[])),
            "ok"
        );
    }

    #[test]
    fn every_gateway_in_the_process_shares_one_bookkeeping_of_the_registry() {
        // Two gateways (tests start many in one process) record the same
        // plugin metric; the second must not find the family "taken".
        let (first, second) = (
            GatewayTelemetry::process_wide(),
            GatewayTelemetry::process_wide(),
        );
        let record = |t: &GatewayTelemetry, plugin| {
            reason(t.record(plugin, "shared_by_gateways", Kind::Counter, 1.0, &[]))
        };
        assert_eq!(record(&first, "p"), "ok");
        assert_eq!(record(&second, "q"), "ok");
    }

    #[test]
    fn a_poisoned_lock_is_recovered() {
        let telemetry = std::sync::Arc::new(GatewayTelemetry::new(Registry::new()));
        let poisoner = telemetry.clone();
        let _ = std::thread::spawn(move || {
            let _guard = poisoner.families.lock().unwrap();
            panic!("poison the metrics lock");
        })
        .join();
        assert!(telemetry.families.is_poisoned());
        telemetry.counter_add("p", "after", 1, &[]);
        assert!(scrape(&telemetry).contains(r#"wasmgate_plugin_after{plugin="p"} 1"#));
    }
}
