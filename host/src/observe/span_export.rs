//! OTLP export of one span per proxied request (`tracing.otlp` in the config).
//!
//! The span is the gateway's hop of the request's [`TraceContext`]: its trace
//! id, the span id the upstream got in `traceparent`, the caller's span as
//! parent. Spans go to the OpenTelemetry SDK's batch processor, whose own
//! thread sends them to the collector: recording never waits on the network;
//! when the collector is slow or gone the bounded queue drops spans and a
//! warning is logged at most once a minute.

use crate::config::OtlpConfig;
use crate::observe::access_log::Outcome;
use crate::observe::tracecontext::TraceContext;
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SamplingDecision, ShouldSample, SpanData,
    SpanEvents, SpanExporter, SpanLinks, SpanProcessor,
};
use opentelemetry_sdk::Resource;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// The exporter could not be set up from `tracing.otlp`.
#[derive(Debug, thiserror::Error)]
#[error("tracing.otlp: cannot set up the exporter: {0}")]
pub struct ExportSetupError(String);

/// How often a failing collector is reported in the log.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The request spans' exporter; shared by every request.
#[derive(Debug)]
pub struct SpanExport {
    processor: BatchSpanProcessor,
    /// Decides for traces the gateway starts; continued ones follow the caller.
    root_sampler: Sampler,
    scope: InstrumentationScope,
}

/// What one finished request contributes to its span.
pub struct RequestSpan<'a> {
    pub trace: &'a TraceContext,
    pub route: Option<&'a str>,
    pub method: &'a http::Method,
    pub path: &'a str,
    pub status: http::StatusCode,
    pub duration: Duration,
    pub request_id: &'a str,
    pub outcome: &'a Outcome,
}

impl SpanExport {
    /// Starts the batch processor; exports run as tasks on `runtime` (the
    /// gateway's), since the HTTP client needs a Tokio reactor.
    pub fn start(
        config: &OtlpConfig,
        runtime: tokio::runtime::Handle,
    ) -> Result<SpanExport, ExportSetupError> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(config.endpoint.clone())
            .build()
            .map_err(|e| ExportSetupError(e.to_string()))?;
        let exporter = OnRuntime {
            inner: Arc::new(exporter),
            runtime,
            last_warning: Mutex::default(),
        };
        let batch = BatchConfigBuilder::default()
            .with_scheduled_delay(Duration::from_millis(config.batch_delay_ms))
            .build();
        let mut processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(batch)
            .build();
        processor.set_resource(
            &Resource::builder()
                .with_service_name(config.service_name.clone())
                .build(),
        );
        Ok(SpanExport {
            processor,
            root_sampler: Sampler::TraceIdRatioBased(config.sample_ratio),
            scope: InstrumentationScope::builder("wasmgate")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
        })
    }

    /// Whether a trace the gateway starts is sampled: decided once, when it
    /// starts, so the `traceparent` sent upstream carries the same verdict
    /// as the export (a continued trace keeps its caller's).
    pub fn samples_new_trace(&self, trace_id: u128) -> bool {
        self.root_sampler
            .should_sample(
                None,
                TraceId::from(trace_id),
                "",
                &SpanKind::Server,
                &[],
                &[],
            )
            .decision
            == SamplingDecision::RecordAndSample
    }

    /// Queues the request's span if its trace is sampled; never blocks.
    pub fn record(&self, request: RequestSpan<'_>) {
        let trace = request.trace;
        let trace_id = TraceId::from(trace.trace_id);
        let name = match request.route {
            Some(route) => format!("{} {route}", request.method),
            None => request.method.to_string(),
        };
        if trace.flags & TraceFlags::SAMPLED.to_u8() == 0 {
            return;
        }
        let end_time = SystemTime::now();
        let outcome = request.outcome;
        let mut attributes = vec![
            KeyValue::new("http.request.method", request.method.to_string()),
            KeyValue::new("url.path", request.path.to_string()),
            KeyValue::new(
                "http.response.status_code",
                i64::from(request.status.as_u16()),
            ),
            KeyValue::new("wasmgate.answered_by", outcome.answered_by.as_str()),
            KeyValue::new("wasmgate.request_id", request.request_id.to_string()),
        ];
        if let Some(route) = request.route {
            attributes.push(KeyValue::new("http.route", route.to_string()));
        }
        if let Some(upstream) = &outcome.upstream {
            attributes.push(KeyValue::new("wasmgate.upstream", upstream.clone()));
        }
        if let Some(target) = outcome.upstream_target {
            attributes.push(KeyValue::new(
                "wasmgate.upstream.target",
                target.to_string(),
            ));
        }
        if let Some(plugin) = &outcome.plugin {
            attributes.push(KeyValue::new("wasmgate.plugin", plugin.clone()));
        }
        let status = if request.status.is_server_error() {
            Status::error(format!("HTTP {}", request.status.as_u16()))
        } else {
            Status::Unset
        };
        self.processor.on_end(SpanData {
            span_context: SpanContext::new(
                trace_id,
                SpanId::from(trace.span_id),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: trace.parent_id.map_or(SpanId::INVALID, SpanId::from),
            parent_span_is_remote: trace.parent_id.is_some(),
            span_kind: SpanKind::Server,
            name: name.into(),
            start_time: end_time - request.duration,
            end_time,
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status,
            instrumentation_scope: self.scope.clone(),
        });
    }

    /// Sends the spans still queued and stops the processor. Blocks until
    /// done (at most a few seconds): call it off the async workers.
    pub fn shutdown(&self) {
        if let Err(e) = self.processor.shutdown() {
            tracing::warn!("OTLP span export did not flush at shutdown: {e}");
        }
    }
}

/// Runs the OTLP exporter's requests on the gateway's Tokio runtime (the
/// batch processor calls it from its own thread) and rate-limits the
/// warnings of a failing collector.
#[derive(Debug)]
struct OnRuntime {
    inner: Arc<opentelemetry_otlp::SpanExporter>,
    runtime: tokio::runtime::Handle,
    last_warning: Mutex<Option<Instant>>,
}

impl OnRuntime {
    fn warn_rarely(&self, error: &OTelSdkError) {
        let mut last = self.last_warning.lock().expect("warning lock");
        if last.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            *last = Some(Instant::now());
            tracing::warn!("OTLP span export failed, spans dropped: {error}");
        }
    }
}

impl SpanExporter for OnRuntime {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let inner = self.inner.clone();
        let sent = self
            .runtime
            .spawn(async move { inner.export(batch).await })
            .await;
        let result = sent.unwrap_or_else(|e| Err(OTelSdkError::InternalFailure(e.to_string())));
        if let Err(error) = &result {
            self.warn_rarely(error);
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.set_resource(resource);
        }
    }
}
