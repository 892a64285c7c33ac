//! Spans as a collector receives them: an OTLP/HTTP collector in this
//! process (a test binary of its own, so the process-wide exporter is this
//! test's alone).

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use emporium_telemetry::traces::{enabled, flush_traces, init_traces};
use emporium_telemetry::{Span, SpanKind, TraceParent};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span as ProtoSpan;
use prost::Message;

type Received = Arc<Mutex<Vec<(String, ProtoSpan)>>>;

async fn collect(State(received): State<Received>, body: Bytes) -> (StatusCode, Vec<u8>) {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return (StatusCode::BAD_REQUEST, Vec::new());
    };
    // A collector that refuses the spans of service `refused`.
    let refused = request.resource_spans.iter().any(|r| {
        r.resource.iter().flat_map(|r| &r.attributes).any(|kv| {
            kv.key == "service.name"
                && matches!(kv.value.as_ref().and_then(|v| v.value.as_ref()),
                    Some(AnyValue::StringValue(s)) if s == "refused")
        })
    });
    if refused {
        return (StatusCode::INTERNAL_SERVER_ERROR, Vec::new());
    }
    let mut seen = received.lock().unwrap();
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                AnyValue::StringValue(s) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                seen.push((service.clone(), span));
            }
        }
    }
    (
        StatusCode::OK,
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
}

fn attribute<'s>(span: &'s ProtoSpan, key: &str) -> Option<&'s AnyValue> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

/// The span-flags bits of OTLP: whether the parent's remoteness is known, and whether it is remote.
const HAS_IS_REMOTE: u32 = 0x100;
const IS_REMOTE: u32 = 0x200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_the_collector_with_the_ids_the_headers_carry() {
    // Endpoints that cannot be one, and CAs that hold no certificate, are
    // refused, and leave traces off. (Reading a CA file is
    // `emporium_http::tls::read_ca_file`'s, tested there.)
    for (endpoint, ca) in [
        ("not a url", None),
        ("ftp://collector:4318", None),
        ("file:///etc/passwd", None),
        ("http://", None),
        ("https://", None),
        ("http://collector:4318\n", None),
        ("http:// collector:4318", None),
        ("http://user:secret@collector:4318", None),
        ("http://collector:4318/?token=secret", None),
        ("http://collector:4318/#x", None),
        ("https://collector:4318", Some(Vec::new())),
        (
            "https://collector:4318",
            Some(b"not a certificate".to_vec()),
        ),
    ] {
        assert!(
            init_traces(endpoint, ca.clone()).is_err(),
            "{endpoint} {ca:?}"
        );
    }
    assert!(!enabled());

    let received: Received = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/v1/traces", axum::routing::post(collect))
        .with_state(received.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    // A trailing slash is the same endpoint.
    init_traces(&format!("{collector}/"), None).unwrap();
    assert!(enabled());
    // A second endpoint is ignored: spans keep going to the first.
    init_traces("http://127.0.0.1:9", None).unwrap();

    // A caller in another process, this service's request span under it, a
    // call it makes, and a part of the trace its caller chose not to sample.
    let caller = TraceParent::generate();
    let request = caller.child();
    let call = request.child();
    let mut unsampled = TraceParent::generate();
    unsampled.sampled = false;
    {
        let mut span = Span::start(
            "orders",
            SpanKind::Server,
            &request,
            Some(caller.parent_id),
            || "POST /api/v1/orders".into(),
        );
        assert!(span.is_recording());
        span.set("http.response.status_code", 201_i64);
        let mut client = Span::start(
            "orders",
            SpanKind::Client,
            &call,
            Some(request.parent_id),
            || "POST catalog".into(),
        );
        client.fail("answered 503");
        let other = Span::start(
            "catalog",
            SpanKind::Internal,
            &call.child(),
            Some(call.parent_id),
            || "saga reserve_stock".into(),
        );
        drop(other);
        let skipped = Span::start("orders", SpanKind::Server, &unsampled, None, || {
            "GET /".into()
        });
        assert!(!skipped.is_recording());
    }
    flush_traces();

    let trace = caller.trace_id.to_vec();
    let deadline = Instant::now() + Duration::from_secs(20);
    let spans = loop {
        let spans: Vec<(String, ProtoSpan)> = received
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, s)| s.trace_id == trace)
            .cloned()
            .collect();
        if spans.len() >= 3 {
            break spans;
        }
        assert!(Instant::now() < deadline, "{spans:#?}");
        flush_traces();
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(spans.len(), 3, "{spans:#?}");
    assert!(
        !received
            .lock()
            .unwrap()
            .iter()
            .any(|(_, s)| s.trace_id == unsampled.trace_id.to_vec()),
        "an unsampled trace is not exported"
    );
    let find = |id: [u8; 8]| {
        spans
            .iter()
            .find(|(_, s)| s.span_id == id.to_vec())
            .unwrap_or_else(|| panic!("no span {id:?} in {spans:#?}"))
    };

    let (service, server) = find(request.parent_id);
    assert_eq!(service, "orders");
    assert_eq!(server.name, "POST /api/v1/orders");
    assert_eq!(server.kind, 2, "server");
    assert_eq!(server.parent_span_id, caller.parent_id.to_vec());
    assert_eq!(
        server.flags & (HAS_IS_REMOTE | IS_REMOTE),
        HAS_IS_REMOTE | IS_REMOTE
    );
    assert!(matches!(
        attribute(server, "http.response.status_code"),
        Some(AnyValue::IntValue(201))
    ));
    assert!(server.end_time_unix_nano >= server.start_time_unix_nano);

    let (service, client) = find(call.parent_id);
    assert_eq!(service, "orders");
    assert_eq!(client.kind, 3, "client");
    assert_eq!(client.parent_span_id, request.parent_id.to_vec());
    assert_eq!(client.flags & IS_REMOTE, 0, "its parent is in this process");
    let status = client.status.as_ref().unwrap();
    assert_eq!(status.code, 2, "error");
    assert_eq!(status.message, "answered 503");

    // Each service is its own resource, in one process too (`emporium up`).
    let (service, internal) = spans
        .iter()
        .find(|(_, s)| s.name == "saga reserve_stock")
        .unwrap();
    assert_eq!(service, "catalog");
    assert_eq!(internal.kind, 1, "internal");
    assert_eq!(internal.parent_span_id, call.parent_id.to_vec());

    // A collector that refuses a batch is counted (and warned about), and
    // the spans are dropped; the caller never sees it.
    emporium_telemetry::metrics_handle();
    drop(Span::start(
        "refused",
        SpanKind::Internal,
        &TraceParent::generate(),
        None,
        || "dropped".into(),
    ));
    let failures = "traces_export_failures_total{service=\"refused\"} 1";
    let deadline = Instant::now() + Duration::from_secs(20);
    while !emporium_telemetry::metrics_handle()
        .render()
        .lines()
        .any(|l| l == failures)
    {
        assert!(Instant::now() < deadline, "no {failures}");
        flush_traces();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
