//! The upstreams of the current generation by name, for whoever needs one
//! outside a route: plugins' outbound calls and the admin listener.

use super::{http_client, report, Upstream};
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::Arc;

/// The current upstreams by name, swapped as a whole on reload; shared by
/// the proxy (through the gateway) and plugins' outbound calls.
#[derive(Default)]
pub struct UpstreamDirectory {
    current: ArcSwap<HashMap<String, Arc<Upstream>>>,
}

impl UpstreamDirectory {
    /// Looks an upstream up by name.
    pub fn get(&self, name: &str) -> Option<Arc<Upstream>> {
        self.current.load().get(name).cloned()
    }

    /// Every current upstream.
    pub fn all(&self) -> Arc<HashMap<String, Arc<Upstream>>> {
        self.current.load_full()
    }

    /// Publishes a new set (on start and reload) and starts the health
    /// checks of its new upstreams; upstreams kept from the previous set
    /// keep their running checks, and a dropped upstream's checks stop
    /// with it.
    pub fn publish(&self, upstreams: HashMap<String, Arc<Upstream>>) {
        let mut client = None;
        for upstream in upstreams.values() {
            upstream.start_checks(|| client.get_or_insert_with(http_client).clone());
        }
        let previous = self.current.swap(Arc::new(upstreams));
        report::forget_removed(&previous, &self.current.load());
    }
}
