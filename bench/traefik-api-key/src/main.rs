//! wasmgate's `api-key` plugin rewritten as a Traefik middleware on the
//! http-wasm ABI, so `bench/run.sh` can compare the two gateways doing the
//! same work per request (`traefik-key` against `gateway-key`).
//!
//! Per request, as `plugins/api-key`: the key is read from one header
//! (`x-api-key` by default) and looked up exactly in a hash map. Without a
//! key, or with an unknown one (logged at info level): `401` with
//! `content-type: application/json`, `www-authenticate: ApiKey
//! header="x-api-key"` and `{"code":"unauthorized","error":"missing API key"}`
//! (or `invalid API key`). With a valid key the consumer's name is set in
//! `x-consumer` and the key header is removed before the upstream.
//!
//! Built for `wasm32-wasip1` as a command module: Traefik runs `_start`
//! (this `main`) once per guest instance, which reads the config and
//! registers the handler; a config the checks refuse traps there, and
//! Traefik refuses the middleware.

mod api_key;
mod config;

use http_wasm_guest::host::admin;

fn main() {
    match config::parse(&admin::config()) {
        Ok(checked) => http_wasm_guest::register(api_key::ApiKey::new(checked)),
        Err(e) => panic!("api-key: {e}"),
    }
}
