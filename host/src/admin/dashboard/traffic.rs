//! Live traffic for the dashboard: every [`INTERVAL`] the gateway's own
//! request counters and latency histograms are read, and what changed since
//! the last reading becomes one sample per route (req/s, error rate, p50,
//! p99). The last [`KEEP`] samples are kept, so the page shows the last
//! minutes even when it was opened after the trouble started.

use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

/// How often a sample is taken.
pub const INTERVAL: Duration = Duration::from_secs(2);

/// Samples kept per route: five minutes.
const KEEP: usize = 150;

/// One route over one interval.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Sample {
    /// End of the interval, milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub rps: f64,
    /// Share of the interval's requests answered 5xx.
    pub error_rate: f64,
    /// Latency to the response head, estimated from the histogram buckets
    /// as Prometheus' `histogram_quantile` does; `None` without requests.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// Cumulative counts of one route at one reading.
#[derive(Debug, Clone, Default)]
struct Reading {
    requests: u64,
    errors: u64,
    /// (upper bound in seconds, cumulative count), ascending.
    buckets: Vec<(f64, u64)>,
}

#[derive(Default)]
struct History {
    last: HashMap<String, Reading>,
    last_at: Option<std::time::Instant>,
    samples: BTreeMap<String, VecDeque<Sample>>,
}

static HISTORY: LazyLock<Mutex<History>> = LazyLock::new(Mutex::default);

/// Samples forever; the admin listener runs it beside its accept loop.
pub async fn sample_forever() {
    let mut ticks = tokio::time::interval(INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        sample_now();
    }
}

/// Takes one sample of every route from the process-wide metrics.
pub fn sample_now() {
    let metrics = crate::observe::metrics::metrics();
    let readings = read(
        &metrics.requests.collect(),
        &metrics.request_duration.collect(),
    );
    let now = std::time::Instant::now();
    let at_ms = super::events::now_ms();
    let mut history = HISTORY.lock().unwrap_or_else(|e| e.into_inner());
    let elapsed = history
        .last_at
        .map(|t| now.duration_since(t).as_secs_f64())
        .filter(|s| *s > 0.0);
    if let Some(seconds) = elapsed {
        for (route, reading) in &readings {
            let previous = history.last.get(route).cloned().unwrap_or_default();
            let sample = difference(&previous, reading, seconds, at_ms);
            let samples = history.samples.entry(route.clone()).or_default();
            if samples.len() == KEEP {
                samples.pop_front();
            }
            samples.push_back(sample);
        }
    }
    history.last = readings;
    history.last_at = Some(now);
}

/// Every route's samples, oldest first.
pub fn samples() -> BTreeMap<String, VecDeque<Sample>> {
    HISTORY
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .samples
        .clone()
}

/// Cumulative readings by route from the request counter and histogram.
fn read(requests: &[MetricFamily], durations: &[MetricFamily]) -> HashMap<String, Reading> {
    let mut readings: HashMap<String, Reading> = HashMap::new();
    for metric in requests.iter().flat_map(|f| f.get_metric()) {
        let (mut route, mut class) = ("", "");
        for label in metric.get_label() {
            match label.name() {
                "route" => route = label.value(),
                "status_class" => class = label.value(),
                _ => {}
            }
        }
        let count = metric.get_counter().get_value() as u64;
        let reading = readings.entry(route.to_string()).or_default();
        reading.requests += count;
        if class == "5xx" {
            reading.errors += count;
        }
    }
    for metric in durations.iter().flat_map(|f| f.get_metric()) {
        let Some(route) = metric
            .get_label()
            .iter()
            .find(|l| l.name() == "route")
            .map(|l| l.value())
        else {
            continue;
        };
        let buckets = metric
            .get_histogram()
            .get_bucket()
            .iter()
            .map(|b| (b.upper_bound(), b.cumulative_count()))
            .collect();
        readings.entry(route.to_string()).or_default().buckets = buckets;
    }
    readings
}

/// The sample of one interval: what changed between two readings.
fn difference(before: &Reading, after: &Reading, seconds: f64, at_ms: u64) -> Sample {
    let requests = after.requests.saturating_sub(before.requests);
    let errors = after.errors.saturating_sub(before.errors);
    let buckets: Vec<(f64, u64)> = after
        .buckets
        .iter()
        .map(|&(bound, count)| {
            let earlier = before
                .buckets
                .iter()
                .find(|(b, _)| *b == bound)
                .map_or(0, |(_, c)| *c);
            (bound, count.saturating_sub(earlier))
        })
        .collect();
    Sample {
        at_ms,
        rps: requests as f64 / seconds,
        error_rate: if requests == 0 {
            0.0
        } else {
            errors as f64 / requests as f64
        },
        p50_ms: quantile(&buckets, 0.5).map(|s| s * 1000.0),
        p99_ms: quantile(&buckets, 0.99).map(|s| s * 1000.0),
    }
}

/// The `q` quantile of cumulative bucket counts, interpolated linearly
/// within its bucket; the highest finite bound if it falls beyond it.
fn quantile(buckets: &[(f64, u64)], q: f64) -> Option<f64> {
    let total = buckets.iter().map(|(_, c)| *c).max().filter(|t| *t > 0)? as f64;
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(bound, count) in buckets {
        let count = count as f64;
        if count >= rank {
            if !bound.is_finite() {
                return Some(lower.0);
            }
            let within = count - lower.1;
            let share = if within > 0.0 {
                (rank - lower.1) / within
            } else {
                1.0
            };
            return Some(lower.0 + (bound - lower.0) * share);
        }
        lower = (bound, count);
    }
    Some(lower.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_their_bucket() {
        // 100 requests: 50 under 10 ms, 40 more under 20 ms, 10 more under 100 ms.
        let buckets = [(0.01, 50), (0.02, 90), (0.1, 100), (f64::INFINITY, 100)];
        assert_eq!(quantile(&buckets, 0.5), Some(0.01));
        let p99 = quantile(&buckets, 0.99).unwrap();
        assert!((p99 - 0.092).abs() < 1e-9, "{p99}");
        assert_eq!(quantile(&[(0.01, 0), (f64::INFINITY, 0)], 0.5), None);
    }

    #[test]
    fn a_sample_is_the_change_over_its_interval() {
        let before = Reading {
            requests: 100,
            errors: 1,
            buckets: vec![(0.01, 100), (0.1, 100), (f64::INFINITY, 100)],
        };
        let after = Reading {
            requests: 300,
            errors: 51,
            buckets: vec![(0.01, 200), (0.1, 300), (f64::INFINITY, 300)],
        };
        let sample = difference(&before, &after, 2.0, 7);
        assert_eq!(sample.rps, 100.0);
        assert_eq!(sample.error_rate, 0.25);
        assert_eq!(sample.p50_ms, Some(10.0));
    }
}
