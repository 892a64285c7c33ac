//! One checkout, one trace: the shop as production runs it
//! (`scripts/distributed.sh`: every service its own process, PostgreSQL,
//! RabbitMQ, HTTPS on every hop) exports its spans over OTLP to a collector
//! this test runs, and a consumer of `order.confirmed` on RabbitMQ, in this
//! process, exports its own. The trace holds the gateway's, orders',
//! catalog's and payments' spans, every checkout saga step, and the
//! consumer's span, all joined parent to child.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use emporium_contracts::Event;
use emporium_contracts::orders::OrderConfirmed;
use emporium_messaging::rabbit::{RabbitBus, RabbitSettings};
use emporium_messaging::{Bus, Envelope, EventHandler, HandlerError, RetryPolicy, Subscription};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;

use crate::TempDir;

/// A span as the collector received it.
#[derive(Debug, Clone)]
struct Seen {
    service: String,
    name: String,
    kind: i32,
    trace: String,
    id: String,
    parent: String,
    /// Attributes with a string or integer value, as text.
    attributes: HashMap<String, String>,
}

type Received = Arc<Mutex<Vec<Seen>>>;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `POST /v1/traces` of OTLP/HTTP: protobuf in, protobuf out.
async fn collect(State(received): State<Received>, body: Bytes) -> (StatusCode, Vec<u8>) {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return (StatusCode::BAD_REQUEST, Vec::new());
    };
    let mut seen = received.lock().unwrap();
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
            .map(|v| match v {
                AnyValue::StringValue(s) => s.clone(),
                other => format!("{other:?}"),
            })
            .unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                let attributes = span
                    .attributes
                    .iter()
                    .filter_map(|kv| {
                        let value = match kv.value.as_ref()?.value.as_ref()? {
                            AnyValue::StringValue(s) => s.clone(),
                            AnyValue::IntValue(i) => i.to_string(),
                            _ => return None,
                        };
                        Some((kv.key.clone(), value))
                    })
                    .collect();
                seen.push(Seen {
                    attributes,
                    service: service.clone(),
                    name: span.name,
                    kind: span.kind,
                    trace: hex(&span.trace_id),
                    id: hex(&span.span_id),
                    parent: hex(&span.parent_span_id),
                });
            }
        }
    }
    (
        StatusCode::OK,
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
}

/// Takes `order.confirmed` from RabbitMQ, as a fulfilment service would.
struct Fulfilment;

#[async_trait::async_trait]
impl EventHandler for Fulfilment {
    async fn handle(&self, _event: &Envelope) -> Result<(), HandlerError> {
        Ok(())
    }
}

/// `scripts/distributed.sh`, stopped (its processes, by their pid files) when dropped.
struct Distributed {
    dir: TempDir,
}

impl Distributed {
    fn script(&self, verb: &str, collector: &str) -> std::process::Output {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        Command::new("bash")
            .arg(root.join("scripts/distributed.sh"))
            .arg(verb)
            .current_dir(&root)
            .env("BIN", env!("CARGO_BIN_EXE_emporium"))
            .env("DIR", self.dir.0.join("shop"))
            .env("PREFIX", "emporium_traces")
            .env("EMPORIUM_TELEMETRY_OTLP_ENDPOINT", collector)
            // Batches every 200 ms rather than 5 s: the test waits less.
            .env("OTEL_BSP_SCHEDULE_DELAY", "200")
            .output()
            .unwrap()
    }
}

impl Drop for Distributed {
    fn drop(&mut self) {
        self.script("stop", "");
    }
}

const SERVER: i32 = 2;
const CLIENT: i32 = 3;
const CONSUMER: i32 = 5;

/// Deletes the test consumer's queues however the test ends: left bound,
/// they would pile up every later `order.confirmed` on the shared broker.
struct Queues(RabbitSettings);

impl Drop for Queues {
    fn drop(&mut self) {
        let bus = RabbitBus::new(self.0.clone());
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(bus.delete_queues("fulfilment.confirmed", RetryPolicy::default()))
        })
        .join();
        if !matches!(deleted, Ok(Ok(()))) {
            eprintln!("the fulfilment.confirmed queues may be left on the broker: {deleted:?}");
        }
    }
}

/// The spans of `trace` once it is whole: rooted in the gateway's request,
/// every parent present, and holding the spans this test looks for.
fn whole(seen: &[Seen], trace: &str) -> Option<Vec<Seen>> {
    let spans: Vec<Seen> = seen.iter().filter(|s| s.trace == trace).cloned().collect();
    let ids: BTreeSet<&str> = spans.iter().map(|s| s.id.as_str()).collect();
    let rooted = spans
        .iter()
        .any(|s| s.parent.is_empty() && s.service == "gateway" && s.kind == SERVER);
    let joined = spans
        .iter()
        .all(|s| s.parent.is_empty() || ids.contains(s.parent.as_str()));
    let has =
        |service: &str, name: &str| spans.iter().any(|s| s.service == service && s.name == name);
    let complete = has("fulfilment", &format!("process {}", OrderConfirmed::TYPE))
        && has("catalog", "POST /internal/v1/reservations")
        && has("catalog", "POST /internal/v1/reservations/{id}/keep")
        && has("payments", "POST /internal/v1/payments");
    (rooted && joined && complete).then_some(spans)
}

/// `span`'s ancestors' `service name`, nearest first.
fn ancestry(spans: &[Seen], span: &Seen) -> Vec<String> {
    let mut path = Vec::new();
    let mut at = span;
    while let Some(parent) = spans.iter().find(|s| s.id == at.parent) {
        path.push(format!("{} {}", parent.service, parent.name));
        at = parent;
    }
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_checkout_is_one_trace_across_services_and_the_bus() {
    let postgres = Command::new("pg_isready")
        .args(["-h", "127.0.0.1", "-q"])
        .status()
        .is_ok_and(|s| s.success());
    let amqp = "amqp://guest:guest@127.0.0.1:5672/%2f";
    let rabbit = RabbitBus::new(RabbitSettings::new(amqp));
    if !postgres || rabbit.ping().await.is_err() {
        assert!(
            std::env::var("CI").is_err(),
            "CI needs PostgreSQL and RabbitMQ"
        );
        eprintln!("skipped: no PostgreSQL or RabbitMQ on 127.0.0.1");
        return;
    }

    let received: Received = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/v1/traces", axum::routing::post(collect))
        .with_state(received.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    // This process's consumer exports to the same collector.
    emporium_telemetry::traces::init_traces(&collector, None).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = async move {
        let mut rx = stop_rx;
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let consumer = rabbit
        .subscribe(
            Subscription {
                consumer: "fulfilment.confirmed".into(),
                event_types: vec![OrderConfirmed::TYPE.into()],
                handler: Arc::new(Fulfilment),
                retry: RetryPolicy::default(),
                prefetch: 16,
            },
            Box::pin(stopped),
        )
        .await
        .unwrap();
    let _queues = Queues(RabbitSettings::new(amqp));

    let shop = Distributed {
        dir: TempDir::new("traces"),
    };
    let started = shop.script("start", &collector);
    assert!(
        started.status.success(),
        "distributed.sh start: {}{}",
        String::from_utf8_lossy(&started.stdout),
        String::from_utf8_lossy(&started.stderr)
    );
    let ca = shop.dir.0.join("shop/certs/ca.pem");
    let mut load = crate::checkout_load("https://127.0.0.1:8543", &ca, 1, 2);
    assert!(
        tokio::task::block_in_place(|| load.wait_exit(Duration::from_secs(120))),
        "the checkout load failed"
    );

    // A checkout's trace (one holding orders' `POST /api/v1/orders`), once
    // every process has sent its part.
    let deadline = Instant::now() + Duration::from_secs(60);
    let spans = loop {
        emporium_telemetry::traces::flush_traces();
        let seen = received.lock().unwrap().clone();
        let found = seen
            .iter()
            .filter(|s| s.service == "orders" && s.name == "POST /api/v1/orders")
            .find_map(|s| whole(&seen, &s.trace));
        if let Some(spans) = found {
            break spans;
        }
        assert!(
            Instant::now() < deadline,
            "no whole checkout trace within a minute; seen: {:#?}",
            seen.iter()
                .map(|s| format!(
                    "{} {} {} {} <- {}",
                    s.trace, s.service, s.name, s.id, s.parent
                ))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let trace = spans[0].trace.clone();
    let _ = stop_tx.send(true);
    let _ = consumer.await;

    let services: BTreeSet<&str> = spans.iter().map(|s| s.service.as_str()).collect();
    for service in ["gateway", "orders", "catalog", "payments", "fulfilment"] {
        assert!(
            services.contains(service),
            "{service} in {trace}: {spans:#?}"
        );
    }
    let names: BTreeSet<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    for step in [
        "saga reserve_stock",
        "saga authorize_payment",
        "saga confirm",
    ] {
        assert!(names.contains(step), "{step} in {names:?}");
    }
    let consumed = spans
        .iter()
        .find(|s| s.kind == CONSUMER && s.service == "fulfilment")
        .unwrap();
    assert_eq!(
        consumed.name,
        format!("process {}", OrderConfirmed::TYPE),
        "{consumed:?}"
    );
    // One tree: a single root (the gateway's request), every other span's
    // parent in the trace.
    let by_id: HashMap<&str, &Seen> = spans.iter().map(|s| (s.id.as_str(), s)).collect();
    let roots: Vec<&Seen> = spans.iter().filter(|s| s.parent.is_empty()).collect();
    assert_eq!(roots.len(), 1, "{roots:#?}");
    assert_eq!(
        (roots[0].service.as_str(), roots[0].kind),
        ("gateway", SERVER),
        "{roots:#?}"
    );
    for span in &spans {
        assert!(
            span.parent.is_empty() || by_id.contains_key(span.parent.as_str()),
            "{span:?} has its parent outside the trace"
        );
    }
    assert_eq!(
        consumed
            .attributes
            .get("messaging.consumer.group.name")
            .map(String::as_str),
        Some("fulfilment.confirmed")
    );
    let placed = spans
        .iter()
        .find(|s| s.service == "orders" && s.name == "POST /api/v1/orders")
        .unwrap();
    assert_eq!(
        placed
            .attributes
            .get("http.response.status_code")
            .map(String::as_str),
        Some("201"),
        "{placed:?}"
    );
    // Every request catalog and payments served in it was a call orders
    // made: their parent is orders' client span of that call.
    for served in spans
        .iter()
        .filter(|s| s.kind == SERVER && (s.service == "catalog" || s.service == "payments"))
    {
        let parent = by_id[served.parent.as_str()];
        assert_eq!(
            (parent.service.as_str(), parent.kind),
            ("orders", CLIENT),
            "{served:?}"
        );
    }
    // Payments' call to the card provider, an outside party, is a span of
    // payments' request; the provider is sent no trace context.
    let authorize = spans
        .iter()
        .find(|s| s.service == "payments" && s.name == "POST /internal/v1/payments")
        .unwrap();
    assert!(
        spans
            .iter()
            .any(|s| s.service == "payments" && s.kind == CLIENT && s.parent == authorize.id),
        "{spans:#?}"
    );
    assert!(!services.contains("sandbox-provider"), "{services:?}");
    // Each saga step's calls descend from it, and the consumer's span from
    // the step that confirmed (its event carries that step's context).
    let process = format!("process {}", OrderConfirmed::TYPE);
    for (service, name, step) in [
        (
            "catalog",
            "POST /internal/v1/reservations",
            "orders saga reserve_stock",
        ),
        (
            "payments",
            "POST /internal/v1/payments",
            "orders saga authorize_payment",
        ),
        (
            "catalog",
            "POST /internal/v1/reservations/{id}/keep",
            "orders saga confirm",
        ),
        ("fulfilment", process.as_str(), "orders saga confirm"),
    ] {
        let span = spans
            .iter()
            .find(|s| s.service == service && s.name == name)
            .unwrap();
        let path = ancestry(&spans, span);
        assert!(
            path.iter().any(|p| p == step),
            "{service} {name} descends from {path:?}, not {step}"
        );
    }
}
