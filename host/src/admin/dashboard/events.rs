//! Recent plugin faults for the dashboard's event list: the last [`KEEP`]
//! faults, newest last. Every fault is kept here even when the log holds it
//! back (the log says a fault once a minute per plugin and kind).

use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{LazyLock, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// Faults kept.
const KEEP: usize = 100;

/// One plugin fault.
#[derive(Debug, Clone, Serialize)]
pub struct FaultEvent {
    pub at_ms: u64,
    pub plugin: String,
    pub route: String,
    pub phase: String,
    pub kind: String,
    pub message: String,
}

static FAULTS: LazyLock<Mutex<VecDeque<FaultEvent>>> = LazyLock::new(Mutex::default);

/// Keeps one fault for the dashboard.
pub fn record_fault(plugin: &str, route: &str, phase: &str, kind: &str, message: String) {
    let event = FaultEvent {
        at_ms: now_ms(),
        plugin: plugin.to_string(),
        route: route.to_string(),
        phase: phase.to_string(),
        kind: kind.to_string(),
        message,
    };
    let mut faults = FAULTS.lock().unwrap_or_else(|e| e.into_inner());
    if faults.len() == KEEP {
        faults.pop_front();
    }
    faults.push_back(event);
}

/// The kept faults, newest first.
pub fn recent_faults() -> Vec<FaultEvent> {
    let faults = FAULTS.lock().unwrap_or_else(|e| e.into_inner());
    faults.iter().rev().cloned().collect()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}
