//! What operators see of the traffic: [`metrics`] (Prometheus),
//! [`access_log`] lines (formatted by [`access_line`], written out by [`log_writer`]), [`tracecontext`] ids and [`span_export`] to an OTLP
//! collector. May use `config`; everything else reports into it.

pub mod access_line;
pub mod access_log;
pub mod log_writer;
pub mod metrics;
pub mod span_export;
pub mod tracecontext;
