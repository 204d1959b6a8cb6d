//! The HTTP data plane around a request: listening and accepting
//! ([`server`], [`accept`], [`descriptors`]), what a client may send and how
//! long it may take ([`limits`], [`body_timeout`], [`strict`], [`path`],
//! [`identity_headers`]), bodies and header conversion ([`body`],
//! [`convert`]) and WebSocket upgrades ([`websocket`], [`tunnel`]).
//! May use `config`, `observe` and `tls`; hands each request to `proxy`.

pub mod accept;
pub mod body;
pub mod body_timeout;
pub mod convert;
pub mod descriptors;
pub mod identity_headers;
pub mod limits;
pub mod path;
pub mod server;
pub mod strict;
pub mod trailers;
pub mod tunnel;
pub mod websocket;
pub mod workers;
