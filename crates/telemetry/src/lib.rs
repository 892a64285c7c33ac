//! Logs, trace context and metrics shared by every service.
//!
//! ## Layout
//! - [`init_logging`]: one JSON object per line on stdout, filtered by `RUST_LOG`
//!   (or the configured level), in the Elastic Common Schema's names
//!   ([`ecs`]): the request span's service, trace, method and path are in
//!   every event logged inside a request. [`init_logging_as`] with
//!   [`LogFormat::Pretty`] writes readable lines instead (`up` at a terminal).
//! - [`TraceParent`]: the W3C `traceparent` header, parsed or started anew.
//! - [`traces`]: OpenTelemetry spans over OTLP, off unless an endpoint is set.
//! - [`metrics_handle`]: the process-wide Prometheus recorder, rendered by `/metrics`.

pub mod ecs;
pub mod traces;

pub use traces::{Span, SpanKind};

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line, for log shippers (what `serve` always writes).
    Json,
    /// Readable lines with colours, for a person at a terminal.
    Pretty,
}

impl LogFormat {
    /// Pretty when standard output is a terminal, JSON otherwise (piped to a file
    /// or a collector).
    pub fn for_stdout() -> Self {
        if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            Self::Pretty
        } else {
            Self::Json
        }
    }
}

/// Installs the JSON log subscriber once per process; later calls are no-ops.
///
/// `default_filter` applies when `RUST_LOG` is unset (for example `"info"`).
pub fn init_logging(default_filter: &str) {
    init_logging_as(default_filter, LogFormat::Json);
}

/// Installs the log subscriber in `format` once per process; later calls are no-ops.
pub fn init_logging_as(default_filter: &str, format: LogFormat) {
    init_logging_for(default_filter, format, "emporium");
}

/// As [`init_logging_as`], naming the process `service` in lines that no
/// request span names (`emporium serve <service>`).
pub fn init_logging_for(default_filter: &str, format: LogFormat, service: &str) {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        let filter =
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
        let builder = tracing_subscriber::fmt()
            .with_span_events(FmtSpan::NONE)
            .with_env_filter(filter)
            .with_writer(std::io::stdout);
        let _ = match format {
            LogFormat::Json => builder
                .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
                .event_format(ecs::EcsFormat {
                    service: service.to_owned(),
                })
                .try_init(),
            // Colours only for a terminal: escape codes in a file help no one.
            LogFormat::Pretty => builder
                .compact()
                .with_target(false)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
                .try_init(),
        };
    });
}

/// Latency buckets in seconds, from sub-millisecond reads to slow saga steps.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The process-wide Prometheus recorder. Installed on first use; in `emporium up`
/// every service shares it and tells its series apart by the `service` label.
pub fn metrics_handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_duration_seconds".into()), LATENCY_BUCKETS)
            .expect("the bucket list is not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (a test harness); then ours
        // still renders what is recorded through it, which is nothing, and the
        // installed one keeps working.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// The W3C trace context carried in the `traceparent` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub parent_id: [u8; 8],
    pub sampled: bool,
}

impl TraceParent {
    /// Parses `00-<32 hex>-<16 hex>-<2 hex>`; anything else is `None` (start a new trace).
    pub fn parse(header: &str) -> Option<Self> {
        let mut parts = header.trim().split('-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let parent = parts.next()?;
        let flags = parts.next()?;
        let mut version_byte = [0u8; 1];
        decode_hex(version, &mut version_byte)?;
        if version_byte[0] == 0xff || trace.len() != 32 || parent.len() != 16 {
            return None;
        }
        if version == "00" && parts.next().is_some() {
            return None;
        }
        let mut trace_id = [0u8; 16];
        let mut parent_id = [0u8; 8];
        decode_hex(trace, &mut trace_id)?;
        decode_hex(parent, &mut parent_id)?;
        let mut flag = [0u8; 1];
        decode_hex(flags, &mut flag)?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            parent_id,
            sampled: flag[0] & 1 == 1,
        })
    }

    /// A new trace with random ids.
    pub fn generate() -> Self {
        let mut trace_id = [0u8; 16];
        let mut parent_id = [0u8; 8];
        let rng = aws_lc_rs::rand::SystemRandom::new();
        aws_lc_rs::rand::SecureRandom::fill(&rng, &mut trace_id).expect("system randomness");
        aws_lc_rs::rand::SecureRandom::fill(&rng, &mut parent_id).expect("system randomness");
        Self {
            trace_id,
            parent_id,
            sampled: true,
        }
    }

    /// The same trace with a new span id: what this hop passes downstream.
    pub fn child(&self) -> Self {
        let mut child = Self::generate();
        child.trace_id = self.trace_id;
        child.sampled = self.sampled;
        child
    }

    pub fn trace_id_hex(&self) -> String {
        encode_hex(&self.trace_id)
    }

    /// This hop's span id (the `parent-id` it passes downstream as its own).
    pub fn span_id_hex(&self) -> String {
        encode_hex(&self.parent_id)
    }

    pub fn header_value(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            encode_hex(&self.trace_id),
            encode_hex(&self.parent_id),
            u8::from(self.sampled)
        )
    }
}

fn decode_hex(s: &str, out: &mut [u8]) -> Option<()> {
    if s.len() != out.len() * 2
        || !s
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[i * 2..i * 2 + 2], 16).ok()?;
    }
    Some(())
}

fn encode_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_and_prints_the_w3c_example() {
        let h = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let tp = TraceParent::parse(h).unwrap();
        assert_eq!(tp.header_value(), h);
        assert_eq!(tp.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let child = tp.child();
        assert_eq!(child.trace_id, tp.trace_id);
        assert_ne!(child.parent_id, tp.parent_id);
        // A later version may add fields; the four known ones are read.
        let later = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds";
        assert_eq!(TraceParent::parse(later).unwrap().trace_id, tp.trace_id);
    }

    #[test]
    fn rejects_malformed_headers() {
        for bad in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "g0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "000-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert!(TraceParent::parse(bad).is_none(), "{bad}");
        }
    }
}
