//! End-to-end tests: each starts the real gateway on 127.0.0.1 with real
//! compiled plugins (`make plugins`), real echo upstreams and a real HTTP
//! client, and checks what comes back over the wire.

mod admin;
mod adversarial;
mod aggregate;
mod bodies;
mod body_timeout;
mod cache;
mod capabilities;
mod chain;
mod cors;
mod dashboard;
mod descriptors;
mod faults;
mod hmac_signature;
mod hostile;
mod identity_headers;
mod ip_filter;
mod isolation;
mod jwt_auth;
mod kubernetes;
mod limits;
mod observability;
mod pki;
mod polyglot;
mod protocol;
mod proxy_wasm;
mod rate_limit;
mod redis;
mod reload;
mod reload_state;
mod request_guard;
mod resilience;
mod routing;
mod security_headers;
mod support;
mod tls;
mod trailers;
mod transform;
mod upstream_pool;
mod websocket;
