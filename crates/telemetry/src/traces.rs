//! Traces: OpenTelemetry spans, exported over OTLP/HTTP (protobuf) to a
//! collector when one is configured ([`init_traces`]); nothing is recorded
//! otherwise, and a [`Span`] is then an empty value.
//!
//! A span's ids are the ones the `traceparent` header carries and the log
//! lines name (`trace.id`, `span.id`): the request span of a service is the
//! hop's [`TraceParent`], a call it makes is a child of it, and the service
//! it calls continues from that call's id. So one checkout is one trace from
//! the gateway through every service and, by the `traceparent` each event
//! carries, through the bus to its consumers.
//!
//! The spans are built here and handed, ended, to the SDK's batch processor
//! and OTLP exporter: one of each per service, so that each service is its
//! own `service.name` even when `emporium up` runs them all in one process.
//! Export happens on the processor's own thread, in batches; a span ended on
//! a request's path costs a queue push. When the queue is full (a collector
//! that is down or slow) spans are dropped, never the request.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use opentelemetry::trace::{SpanContext, SpanId, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue, Value};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, SpanData, SpanEvents, SpanLinks, SpanProcessor,
};

use crate::TraceParent;

/// Where spans go, once set for the process.
static EXPORT: OnceLock<Export> = OnceLock::new();

/// What a span is to its trace (OpenTelemetry's span kinds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// A request this service serves.
    Server,
    /// A call this service makes to another.
    Client,
    /// Work inside the service (a saga step).
    Internal,
    /// An event handed to the bus.
    Producer,
    /// An event taken from the bus.
    Consumer,
}

impl From<SpanKind> for opentelemetry::trace::SpanKind {
    fn from(kind: SpanKind) -> Self {
        match kind {
            SpanKind::Server => Self::Server,
            SpanKind::Client => Self::Client,
            SpanKind::Internal => Self::Internal,
            SpanKind::Producer => Self::Producer,
            SpanKind::Consumer => Self::Consumer,
        }
    }
}

/// The `[telemetry]` settings every service reads (each service's defaults
/// name them; `emporium up` reads the `EMPORIUM_TELEMETRY_…` variables).
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct TelemetrySettings {
    /// The collector's base URL; empty: no traces.
    pub otlp_endpoint: String,
    /// The CA of an https collector; empty: the system's roots.
    pub otlp_ca_cert: String,
}

/// The `[telemetry]` defaults, for a loader of nothing else.
pub const DEFAULTS: &str = "[telemetry]\notlp_endpoint = \"\"\notlp_ca_cert = \"\"\n";

/// A settings document's `[telemetry]` section, the rest ignored.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct TelemetrySection {
    pub telemetry: TelemetrySettings,
}

/// Sends every service's spans to the collector at `endpoint` (its base URL,
/// e.g. `http://otel-collector:4318`; spans go to `/v1/traces`), trusting
/// the certificates of `ca_pem` for an `https` endpoint when given (else the
/// system's roots). Once per process: a second call keeps the first endpoint
/// and says so.
pub fn init_traces(endpoint: &str, ca_pem: Option<Vec<u8>>) -> anyhow::Result<()> {
    let url = traces_url(endpoint)?;
    let ca = ca_pem;
    // The blocking client runs a runtime of its own; it is built off any
    // async runtime the caller is on, and used only from the processors'
    // threads.
    let client = std::thread::spawn(move || -> anyhow::Result<reqwest::blocking::Client> {
        let mut builder = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = ca {
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .context("the collector's CA is not PEM")?;
            anyhow::ensure!(
                !certs.is_empty(),
                "the collector's CA file holds no certificate"
            );
            builder = builder.tls_certs_only(certs);
        }
        Ok(builder.build()?)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("building the OTLP client panicked"))??;
    let export = Export {
        url,
        client,
        processors: RwLock::default(),
    };
    if EXPORT.set(export).is_err() {
        tracing::warn!("Traces are exported already; the second endpoint is ignored.");
    }
    Ok(())
}

/// `<endpoint>/v1/traces`, for an endpoint that is an http(s) URL with a
/// host and nothing else: no credentials (they would be logged, and OTLP
/// over HTTP authenticates by header), query, fragment or stray characters.
fn traces_url(endpoint: &str) -> anyhow::Result<String> {
    let refuse = |why: &str| anyhow::anyhow!("the OTLP endpoint is refused: {why}");
    if endpoint
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(refuse("it holds spaces or control characters"));
    }
    let parsed = reqwest::Url::parse(endpoint).map_err(|e| refuse(&format!("not a URL ({e})")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(refuse("it must be http:// or https://"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(refuse("it names no host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(refuse("it holds credentials"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(refuse("it holds a query or a fragment"));
    }
    let url = format!("{}/v1/traces", parsed.as_str().trim_end_matches('/'));
    url.parse::<http::Uri>()
        .map_err(|e| refuse(&format!("not a URI ({e})")))?;
    Ok(url)
}

/// Whether spans are recorded (an endpoint is configured).
pub fn enabled() -> bool {
    EXPORT.get().is_some()
}

/// How long [`flush_traces`] waits for the collector, all services together.
const FLUSH_WITHIN: Duration = Duration::from_secs(3);

/// Sends what every service has queued (at exit), all services at once,
/// waiting for the collector at most 3 seconds.
pub fn flush_traces() {
    let Some(export) = EXPORT.get() else { return };
    let processors: Vec<_> = match export.processors.read() {
        Ok(map) => map.values().flatten().cloned().collect(),
        Err(_) => return,
    };
    let (done, finished) = std::sync::mpsc::channel();
    for processor in &processors {
        let (processor, done) = (processor.clone(), done.clone());
        std::thread::spawn(move || {
            let _ = done.send(processor.force_flush().is_ok());
        });
    }
    let deadline = std::time::Instant::now() + FLUSH_WITHIN;
    let mut flushed = 0;
    for _ in &processors {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if let Ok(true) = finished.recv_timeout(left) {
            flushed += 1;
        }
    }
    if flushed < processors.len() {
        tracing::warn!(
            services = processors.len(),
            flushed,
            "Spans could not all be sent to the collector before exit."
        );
    }
}

/// The OTLP exporter, saying when the collector does not take a batch: a
/// warning at most once a minute per service, and
/// `traces_export_failures_total{service}`.
#[derive(Debug)]
struct Reporting<E> {
    inner: E,
    service: String,
    last_warned: std::sync::Mutex<Option<std::time::Instant>>,
}

impl<E: opentelemetry_sdk::trace::SpanExporter> opentelemetry_sdk::trace::SpanExporter
    for Reporting<E>
{
    async fn export(&self, batch: Vec<SpanData>) -> opentelemetry_sdk::error::OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        if let Err(e) = &result {
            metrics::counter!("traces_export_failures_total", "service" => self.service.clone())
                .increment(1);
            let now = std::time::Instant::now();
            let warn = match self.last_warned.lock() {
                Ok(mut last) => {
                    let due =
                        last.is_none_or(|at| now.duration_since(at) >= Duration::from_secs(60));
                    if due {
                        *last = Some(now);
                    }
                    due
                }
                Err(_) => false,
            };
            if warn {
                tracing::warn!(service = %self.service, spans, error = %e,
                    "The collector did not take a batch of spans; they are dropped.");
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

struct Export {
    url: String,
    client: reqwest::blocking::Client,
    /// One batch processor per service name (`None`: its exporter could not
    /// be built, said once in the log).
    processors: RwLock<HashMap<String, Option<Arc<BatchSpanProcessor>>>>,
}

impl Export {
    fn processor(&self, service: &str) -> Option<Arc<BatchSpanProcessor>> {
        if let Ok(map) = self.processors.read()
            && let Some(found) = map.get(service)
        {
            return found.clone();
        }
        let mut map = self.processors.write().ok()?;
        map.entry(service.to_owned())
            .or_insert_with(|| match self.build(service) {
                Ok(p) => Some(Arc::new(p)),
                Err(e) => {
                    tracing::warn!(error = %e, service, "No spans will be exported for this service.");
                    None
                }
            })
            .clone()
    }

    fn build(&self, service: &str) -> anyhow::Result<BatchSpanProcessor> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(self.url.clone())
            .with_http_client(self.client.clone())
            .with_timeout(Duration::from_secs(10))
            .build()?;
        let exporter = Reporting {
            inner: exporter,
            service: service.to_owned(),
            last_warned: std::sync::Mutex::new(None),
        };
        let mut processor = BatchSpanProcessor::builder(exporter).build();
        processor.set_resource(
            &Resource::builder_empty()
                .with_service_name(service.to_owned())
                .with_attributes([
                    KeyValue::new("service.namespace", "emporium"),
                    KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
                ])
                .build(),
        );
        Ok(processor)
    }
}

fn scope() -> InstrumentationScope {
    static SCOPE: OnceLock<InstrumentationScope> = OnceLock::new();
    SCOPE
        .get_or_init(|| {
            InstrumentationScope::builder("emporium")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build()
        })
        .clone()
}

/// The longest client-chosen text a span keeps (see [`Span::set_text`]).
pub const MAX_TEXT_ATTRIBUTE: usize = 256;

/// One span being recorded; it ends (and is queued for export) when dropped.
/// Without an endpoint, or in a trace its root chose not to sample, it holds
/// nothing and every method does nothing.
#[derive(Debug, Default)]
#[must_use = "a span ends when it is dropped"]
pub struct Span(Option<Box<Open>>);

#[derive(Debug)]
struct Open {
    service: String,
    name: Cow<'static, str>,
    kind: SpanKind,
    own: TraceParent,
    parent: Option<[u8; 8]>,
    remote_parent: bool,
    start: SystemTime,
    attributes: Vec<KeyValue>,
    status: Status,
}

impl Span {
    /// Starts `service`'s span `own` (its trace and span id) under `parent`
    /// (a span id in the same trace; `None` for a trace's root), named by
    /// `name` (only called when the span is recorded).
    pub fn start(
        service: &str,
        kind: SpanKind,
        own: &TraceParent,
        parent: Option<[u8; 8]>,
        name: impl FnOnce() -> Cow<'static, str>,
    ) -> Self {
        if !own.sampled || !enabled() {
            return Self(None);
        }
        Self(Some(Box::new(Open {
            service: service.to_owned(),
            name: name(),
            kind,
            own: *own,
            parent,
            // A server's or consumer's parent lives in the process that called it.
            remote_parent: matches!(kind, SpanKind::Server | SpanKind::Consumer),
            start: SystemTime::now(),
            attributes: Vec::with_capacity(8),
            status: Status::Unset,
        })))
    }

    /// Whether this span is recorded (worth computing attributes for).
    pub fn is_recording(&self) -> bool {
        self.0.is_some()
    }

    /// Sets attribute `key` (OpenTelemetry's semantic convention names).
    pub fn set(&mut self, key: &'static str, value: impl Into<Value>) {
        if let Some(open) = &mut self.0 {
            open.attributes.push(KeyValue::new(key, value));
        }
    }

    /// Sets attribute `key` to text a client chose (a path): at most
    /// [`MAX_TEXT_ATTRIBUTE`] bytes of it.
    pub fn set_text(&mut self, key: &'static str, text: &str) {
        if self.0.is_some() {
            let mut end = text.len().min(MAX_TEXT_ATTRIBUTE);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            self.set(key, text[..end].to_owned());
        }
    }

    /// Marks the span failed, saying why.
    pub fn fail(&mut self, description: impl Into<Cow<'static, str>>) {
        if let Some(open) = &mut self.0 {
            open.status = Status::error(description);
        }
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        let Some(open) = self.0.take() else { return };
        let Some(processor) = EXPORT.get().and_then(|e| e.processor(&open.service)) else {
            return;
        };
        let data = SpanData {
            span_context: SpanContext::new(
                TraceId::from_bytes(open.own.trace_id),
                SpanId::from_bytes(open.own.parent_id),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: open.parent.map_or(SpanId::INVALID, SpanId::from_bytes),
            parent_span_is_remote: open.parent.is_some() && open.remote_parent,
            span_kind: open.kind.into(),
            name: open.name,
            start_time: open.start,
            end_time: SystemTime::now(),
            attributes: open.attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: open.status,
            instrumentation_scope: scope(),
        };
        processor.on_end(data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_an_endpoint_a_span_records_nothing() {
        // No test in this crate sets an endpoint.
        let own = TraceParent::generate();
        let mut span = Span::start("orders", SpanKind::Internal, &own, None, || {
            unreachable!("the name is not made for a span that is not recorded")
        });
        assert!(!span.is_recording());
        span.set("order.id", "x");
        span.fail("nope");
    }
}
