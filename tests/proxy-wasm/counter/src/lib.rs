//! Proxy-Wasm test filter `counter`. Proves shared data with
//! compare-and-swap: every request reads `hits` with its CAS, writes `n + 1`
//! with that CAS and retries on `CasMismatch`, so under concurrent requests
//! (across instances) the counts are exact: each request sees a distinct n.
//!
//! No config. The root context seeds `hits` with `0` in `on_configure` when
//! it is absent, because the ABI has no insert-if-absent: a write with
//! CAS 0 (which is what a missing key gives) always succeeds, so two
//! requests racing on the very first insert could both write 1.
//! Response headers: `x-hits: <n>`, the count after this request's increment.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, Status};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| Box::new(Root));
}}

const KEY: &str = "hits";

struct Root;

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        if self.get_shared_data(KEY).0.is_none() {
            if let Err(status) = self.set_shared_data(KEY, Some(b"0"), None) {
                log::error!("counter: seeding {KEY} failed: {status:?}");
                return false;
            }
        }
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Counter { hits: 0 }))
    }
}

struct Counter {
    hits: u64,
}

impl Counter {
    fn increment(&self) -> u64 {
        loop {
            let (value, cas) = self.get_shared_data(KEY);
            let n = value
                .and_then(|v| String::from_utf8(v).ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
                + 1;
            match self.set_shared_data(KEY, Some(n.to_string().as_bytes()), cas) {
                Ok(()) => return n,
                Err(Status::CasMismatch) => continue,
                Err(status) => panic!("counter: set_shared_data: {status:?}"),
            }
        }
    }
}

impl Context for Counter {}

impl HttpContext for Counter {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.hits = self.increment();
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.add_http_response_header("x-hits", &self.hits.to_string());
        Action::Continue
    }
}
