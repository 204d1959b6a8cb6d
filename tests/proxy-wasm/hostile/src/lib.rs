//! Proxy-Wasm test filter `hostile`. Proves the host's limits hold for
//! Proxy-Wasm filters as for WIT plugins: a callback that never returns is
//! stopped by the CPU deadline, a trap (a Rust panic, which the SDK's panic
//! hook logs at `Critical` through `proxy_log` before `unreachable`) is
//! caught, and both are handled by the entry's `on_error` (fail open or
//! closed) without harming other requests.
//!
//! The two other modes call WASI with sizes chosen to make the host do
//! unbounded work: `amplify` hands `fd_write` 1000 iovecs that all point at
//! one 1 MiB buffer (a gigabyte, if the host copied every iovec), and
//! `random` asks `random_get` for 16 MiB. Each answers 200 with what the
//! host said: `x-written` (bytes `fd_write` took) or `x-errno`.
//!
//! Config: `{"mode": "loop" | "trap" | "amplify" | "random"}`; anything
//! else makes `on_configure` return false.
//! Request headers: `loop` spins forever; `trap` panics.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use serde::Deserialize;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| Box::new(Root { mode: Mode::Loop }));
}}

#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Mode {
    Loop,
    Trap,
    Amplify,
    Random,
}

/// Raw WASI calls with the sizes the hostile modes need: the SDK has no
/// way to pass them.
#[allow(unsafe_code)]
mod wasi {
    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    unsafe extern "C" {
        fn fd_write(fd: i32, iovs: *const u32, count: i32, written: *mut u32) -> i32;
        fn random_get(buf: *mut u8, len: i32) -> i32;
    }

    /// `fd_write` of 1000 iovecs over one 1 MiB buffer: the bytes the host took.
    pub fn amplified_write() -> u32 {
        let buffer = vec![b'a'; 1 << 20];
        let iovs: Vec<u32> = (0..1000)
            .flat_map(|_| [buffer.as_ptr() as u32, buffer.len() as u32])
            .collect();
        let mut written = 0;
        // SAFETY: every iovec points into `buffer`, alive for the call.
        unsafe { fd_write(1, iovs.as_ptr(), 1000, &mut written) };
        written
    }

    /// `random_get` of 16 MiB: the errno the host answered.
    pub fn huge_random() -> i32 {
        let mut buffer = vec![0u8; 16 << 20];
        // SAFETY: `buffer` is as long as the length passed.
        unsafe { random_get(buffer.as_mut_ptr(), buffer.len() as i32) }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    mode: Mode,
}

struct Root {
    mode: Mode,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        match serde_json::from_slice::<Config>(&config) {
            Ok(config) => {
                self.mode = config.mode;
                true
            }
            Err(e) => {
                log::error!("hostile: invalid config: {e}");
                false
            }
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Hostile { mode: self.mode }))
    }
}

struct Hostile {
    mode: Mode,
}

impl Context for Hostile {}

impl HttpContext for Hostile {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        match self.mode {
            Mode::Loop => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            Mode::Trap => panic!("hostile: trap requested"),
            Mode::Amplify => {
                let written = wasi::amplified_write().to_string();
                self.send_http_response(200, vec![("x-written", &written)], None);
                Action::Pause
            }
            Mode::Random => {
                let errno = wasi::huge_random().to_string();
                self.send_http_response(200, vec![("x-errno", &errno)], None);
                Action::Pause
            }
        }
    }
}
