//! Log lines in the field names of the Elastic Common Schema (ECS), so that
//! Filebeat or Elastic Agent ship them unchanged: one JSON object per line
//! with `@timestamp`, `log.level`, `message`, `service.name`, `trace.id`,
//! `span.id`, `http.request.method`, `url.path`,
//! `http.response.status_code` and `event.duration` (nanoseconds), as the
//! ecs-logging libraries write them (dotted keys at the top level).
//!
//! Fields of the spans an event is logged in come first (the request span
//! names the service, the trace and the route), the event's own after them.
//! Fields without an ECS name keep theirs; `error` becomes `error.message`
//! (in ECS `error` is an object, and a string there would not be indexed).

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The ECS version the names follow.
pub const ECS_VERSION: &str = "8.11.0";

/// Formats events as ECS JSON lines; `service` names the process when no
/// span says which service an event belongs to.
pub struct EcsFormat {
    pub service: String,
}

/// The ECS name of a field the shop's code logs under a short name.
fn ecs_name(field: &str) -> &str {
    match field {
        "service" => "service.name",
        "trace_id" => "trace.id",
        "span_id" => "span.id",
        "request_id" => "http.request.id",
        "method" => "http.request.method",
        "path" => "url.path",
        "status" => "http.response.status_code",
        "error" => "error.message",
        other => other,
    }
}

/// Puts `value` under the field's ECS name; a request's `latency_ms`
/// becomes `event.duration` in nanoseconds.
fn put(line: &mut Map<String, Value>, field: &str, value: Value) {
    if field == "latency_ms" {
        if let Some(ms) = value.as_f64() {
            let nanos = (ms * 1_000_000.0).round();
            line.insert("event.duration".into(), Value::from(nanos as i64));
        }
        return;
    }
    line.insert(ecs_name(field).to_owned(), value);
}

/// An event's fields, as JSON values.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        put(self.0, field.name(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        put(self.0, field.name(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        put(self.0, field.name(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        put(self.0, field.name(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        put(self.0, field.name(), Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        put(self.0, field.name(), Value::from(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        put(self.0, field.name(), Value::from(format!("{value:?}")));
    }
}

impl<S, N> FormatEvent<S, N> for EcsFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        line.insert("@timestamp".into(), Value::from(now));
        line.insert("log.level".into(), Value::from(meta.level().as_str()));
        line.insert("log.logger".into(), Value::from(meta.target()));
        line.insert("ecs.version".into(), Value::from(ECS_VERSION));
        line.insert("service.name".into(), Value::from(self.service.as_str()));
        // The spans' fields are stored as JSON by `JsonFields`.
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                let Some(fields) = extensions.get::<FormattedFields<N>>() else {
                    continue;
                };
                if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(fields) {
                    for (field, value) in fields {
                        put(&mut line, &field, value);
                    }
                }
            }
        }
        event.record(&mut Fields(&mut line));
        writeln!(writer, "{}", Value::Object(line))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    use std::sync::{Arc, Mutex};

    /// Lines written by a subscriber with the ECS format, for one closure.
    fn logged(run: impl FnOnce()) -> Vec<Value> {
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let out = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(EcsFormat {
                service: "emporium".into(),
            })
            .with_writer(move || out.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, run);
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn a_request_line_carries_the_ecs_names() {
        let lines = logged(|| {
            let span = tracing::info_span!(
                "request",
                service = "orders",
                request_id = "r-1",
                trace_id = "4bf92f3577b34da6a3ce929d0e0e4736",
                span_id = "00f067aa0ba902b7",
                method = "POST",
                path = "/api/v1/orders",
            );
            span.in_scope(|| {
                tracing::info!(status = 201_u16, latency_ms = 12.5, "Request finished.");
                tracing::warn!(error = "the catalog did not answer", "A step failed.");
            });
            tracing::info!(url = "https://127.0.0.1:8084", "Orders listening.");
        });
        let request = &lines[0];
        for (name, value) in [
            ("message", Value::from("Request finished.")),
            ("log.level", Value::from("INFO")),
            ("service.name", Value::from("orders")),
            ("trace.id", Value::from("4bf92f3577b34da6a3ce929d0e0e4736")),
            ("span.id", Value::from("00f067aa0ba902b7")),
            ("http.request.id", Value::from("r-1")),
            ("http.request.method", Value::from("POST")),
            ("url.path", Value::from("/api/v1/orders")),
            ("http.response.status_code", Value::from(201)),
            ("event.duration", Value::from(12_500_000)),
        ] {
            assert_eq!(request[name], value, "{name}: {request}");
        }
        let stamp = request["@timestamp"].as_str().unwrap();
        assert!(stamp.ends_with('Z') && stamp.len() == 24, "{stamp}");
        assert!(request.get("latency_ms").is_none() && request.get("status").is_none());
        assert_eq!(lines[1]["error.message"], "the catalog did not answer");
        assert_eq!(lines[1]["log.level"], "WARN");
        // Outside a request: the process's name, and the event's own fields.
        assert_eq!(lines[2]["service.name"], "emporium");
        assert_eq!(lines[2]["url"], "https://127.0.0.1:8084");
        assert!(lines[2].get("trace.id").is_none());
    }
}
