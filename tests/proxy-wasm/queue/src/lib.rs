//! Proxy-Wasm test filter `queue`. Proves shared queues with
//! `proxy_on_queue_ready`: the root context registers queue `paths` in
//! `on_configure`; each request (an HTTP context, which only resolves the
//! queue) enqueues its path; the host then calls `proxy_on_queue_ready` on
//! the root context that registered the queue, outside any request, and it
//! drains the queue, keeping in shared data (`allow: kv`) how many items it
//! has taken so far (`seen`) and the last one (`last`).
//!
//! Config text `requeue` makes the root context put one item back each
//! time it drains the queue (a retry loop, or a hostile filter): the host
//! must pace the wake-ups that follow instead of spinning a worker on them.
//!
//! Request headers: enqueues the request's path, then adds
//! `x-queue-seen: <seen, 0 if none>` and `x-queue-last: <last>` (when set).

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| Box::new(Root::default()));
}}

const QUEUE: &str = "paths";

#[derive(Default)]
struct Root {
    requeue: bool,
}

impl Context for Root {}

/// Shared data `key` as text, if set.
fn read(context: &dyn Context, key: &str) -> Option<String> {
    context
        .get_shared_data(key)
        .0
        .map(|v| String::from_utf8_lossy(&v).into_owned())
}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        self.requeue = self.get_plugin_configuration().as_deref() == Some(b"requeue");
        self.register_shared_queue(QUEUE);
        true
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        let mut seen: u64 = read(&*self, "seen")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut last = None;
        while let Ok(Some(item)) = self.dequeue_shared_queue(queue_id) {
            seen += 1;
            last = Some(item);
        }
        if let Some(last) = last {
            self.set_shared_data("last", Some(&last), None).ok();
        }
        self.set_shared_data("seen", Some(seen.to_string().as_bytes()), None)
            .ok();
        if self.requeue {
            self.enqueue_shared_queue(queue_id, Some(b"again")).ok();
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Enqueue))
    }
}

struct Enqueue;

impl Context for Enqueue {}

impl HttpContext for Enqueue {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let path = self.get_http_request_header(":path").unwrap_or_default();
        match self.resolve_shared_queue("", QUEUE) {
            Some(queue) => {
                if let Err(status) = self.enqueue_shared_queue(queue, Some(path.as_bytes())) {
                    log::error!("queue: enqueue failed: {status:?}");
                }
            }
            None => log::error!("queue: `{QUEUE}` is not registered"),
        }
        let seen = read(&*self, "seen").unwrap_or_else(|| "0".to_string());
        self.add_http_request_header("x-queue-seen", &seen);
        if let Some(last) = read(&*self, "last") {
            self.add_http_request_header("x-queue-last", &last);
        }
        Action::Continue
    }
}
