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
                seen.push(Seen {
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
const CONSUMER: i32 = 5;

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

    // The checkouts' traces: those holding orders' `POST /api/v1/orders`.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (trace, spans) = loop {
        emporium_telemetry::traces::flush_traces();
        let seen = received.lock().unwrap().clone();
        let complete = seen
            .iter()
            .filter(|s| s.service == "orders" && s.name == "POST /api/v1/orders")
            .map(|s| s.trace.clone())
            .find(|trace| {
                seen.iter()
                    .any(|s| &s.trace == trace && s.kind == CONSUMER && s.service == "fulfilment")
            });
        if let Some(trace) = complete {
            let spans: Vec<Seen> = seen.into_iter().filter(|s| s.trace == trace).collect();
            break (trace, spans);
        }
        assert!(
            Instant::now() < deadline,
            "no checkout trace reached its consumer within a minute; seen: {:#?}",
            seen.iter()
                .map(|s| format!("{} {} {}", s.service, s.name, s.trace))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let _ = stop_tx.send(true);
    let _ = consumer.await;
    rabbit
        .delete_queues("fulfilment.confirmed", RetryPolicy::default())
        .await
        .unwrap();

    for s in &spans {
        eprintln!(
            "{} {} {} <- {} ({})",
            s.service, s.name, s.id, s.parent, s.kind
        );
    }
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
    // The consumer's span descends from the saga step that confirmed.
    let mut at = consumed;
    let mut path = vec![at.name.clone()];
    while let Some(parent) = by_id.get(at.parent.as_str()) {
        at = parent;
        path.push(format!("{} {}", at.service, at.name));
    }
    assert!(
        path.iter().any(|p| p == "orders saga confirm"),
        "the consumer's ancestry: {path:?}"
    );
}
