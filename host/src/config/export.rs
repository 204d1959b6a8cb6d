//! Config of trace export: one OTLP span per proxied request, sent to a
//! collector. Off unless `tracing.otlp` is present.

use serde::Deserialize;

/// The `tracing:` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracingConfig {
    /// Export spans over OTLP/HTTP (protobuf); no export when absent.
    #[serde(default)]
    pub otlp: Option<OtlpConfig>,
}

/// Where and how request spans are exported. Read at start; a reload keeps
/// the exporter the gateway started with.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// The collector's OTLP/HTTP traces URL, e.g. `http://127.0.0.1:4318/v1/traces`.
    pub endpoint: String,
    /// `service.name` of the exported resource.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// Share of new traces exported, in [0, 1]. A continued trace follows
    /// its caller's sampled flag instead (parent-based sampling).
    #[serde(default = "default_sample_ratio")]
    pub sample_ratio: f64,
    /// How long finished spans wait to be sent in one batch.
    #[serde(default = "default_batch_delay_ms")]
    pub batch_delay_ms: u64,
}

fn default_service_name() -> String {
    "wasmgate".into()
}

fn default_sample_ratio() -> f64 {
    1.0
}

fn default_batch_delay_ms() -> u64 {
    5_000
}

/// Values serde accepts but export cannot use; on error, the field (below
/// `tracing.otlp`) and the message.
pub(super) fn check(otlp: &OtlpConfig) -> Result<(), (&'static str, String)> {
    let endpoint = otlp.endpoint.parse::<http::Uri>().ok();
    let usable = endpoint
        .as_ref()
        .is_some_and(|uri| uri.scheme_str() == Some("http") && uri.authority().is_some());
    if !usable {
        return Err((
            "endpoint",
            format!(
                "tracing.otlp.endpoint `{}` is not an http:// URL (e.g. http://127.0.0.1:4318/v1/traces)",
                otlp.endpoint
            ),
        ));
    }
    if otlp.service_name.trim().is_empty() {
        return Err((
            "service_name",
            "tracing.otlp.service_name must not be empty".into(),
        ));
    }
    if !(0.0..=1.0).contains(&otlp.sample_ratio) {
        return Err((
            "sample_ratio",
            format!(
                "tracing.otlp.sample_ratio {} must be in [0, 1]",
                otlp.sample_ratio
            ),
        ));
    }
    if otlp.batch_delay_ms == 0 {
        return Err((
            "batch_delay_ms",
            "tracing.otlp.batch_delay_ms must be greater than 0".into(),
        ));
    }
    Ok(())
}
