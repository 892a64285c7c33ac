//! `Idempotency-Key` over real HTTP on both engines: a `POST /things` handler
//! that counts its runs sits behind the layer inside the standard layers, the
//! caller is the `x-test-principal` header, and time is a manual clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use emporium_db::testing::TestDatabase;
use emporium_db::{Clock, Db, Engine, ManualClock, SharedClock};
use emporium_http::idempotency::{self, IdempotencyLayer, Timing};
use emporium_http::{
    HttpServer, HttpSettings, Problem, ServiceName, Shutdown, ShutdownTrigger, standard_layers,
};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

emporium_db::on_engines!(
    a_retry_replays_the_first_answer,
    concurrent_requests_with_one_key_execute_once,
    a_key_reused_with_another_body_is_refused,
    keys_belong_to_their_caller,
    keys_are_required_and_checked,
    keys_expire_after_the_ttl_and_are_purged,
    expired_keys_are_purged_in_the_background,
    a_failed_execution_forgets_the_key,
    a_key_whose_executor_died_is_taken_over_after_its_lease,
    an_executor_that_lost_its_lease_does_not_store_its_answer,
);

/// What the handler sees and does.
#[derive(Clone)]
struct Things {
    runs: Arc<AtomicUsize>,
    /// A request with `"hold": true` waits here for a permit.
    gate: Arc<Semaphore>,
    /// The next run answers 500.
    fail_next: Arc<AtomicBool>,
}

impl Things {
    fn new() -> Self {
        Self {
            runs: Arc::new(AtomicUsize::new(0)),
            gate: Arc::new(Semaphore::new(0)),
            fail_next: Arc::new(AtomicBool::new(false)),
        }
    }

    fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }
}

async fn create_thing(State(things): State<Things>, body: Bytes) -> Response {
    things.runs.fetch_add(1, Ordering::SeqCst);
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if request["hold"] == true {
        things.gate.acquire().await.unwrap().forget();
    }
    if things.fail_next.swap(false, Ordering::SeqCst) {
        return Problem::internal().into_response();
    }
    let id = uuid::Uuid::new_v4();
    (
        StatusCode::CREATED,
        [(header::LOCATION, format!("/things/{id}"))],
        axum::Json(json!({"id": id.to_string(), "name": request["name"]})),
    )
        .into_response()
}

/// The calling side: cheap to clone into tasks.
#[derive(Clone)]
struct Caller {
    url: String,
    client: reqwest::Client,
}

/// One answer, read whole.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    fn replayed(&self) -> bool {
        self.header("idempotent-replayed") == Some("true")
    }

    /// Asserts a first execution's answer and returns the new thing's id.
    fn created(&self) -> String {
        assert_eq!(self.status, 201, "{self:?}");
        assert!(!self.replayed(), "{self:?}");
        let id = self.json()["id"].as_str().unwrap().to_owned();
        assert_eq!(
            self.header("location"),
            Some(format!("/things/{id}").as_str())
        );
        id
    }

    /// Asserts a problem of this kind, status and title.
    fn problem(&self, status: u16, kind: &str, title: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{self:?}"
        );
        let body = self.json();
        assert_eq!(body["type"], format!("/problems/{kind}"), "{body}");
        assert_eq!(body["title"], title, "{body}");
        assert_eq!(body["status"], status, "{body}");
    }
}

impl Caller {
    async fn post(&self, principal: Option<&str>, key: Option<&str>, body: &Value) -> Reply {
        let mut request = self
            .client
            .post(format!("{}/things", self.url))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(body).unwrap());
        if let Some(principal) = principal {
            request = request.header("x-test-principal", principal);
        }
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        let response = request.send().await.unwrap();
        Reply {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.bytes().await.unwrap(),
        }
    }
}

struct App {
    caller: Caller,
    things: Things,
    layer: IdempotencyLayer,
    clock: Arc<ManualClock>,
    db: Db,
    _stop: ShutdownTrigger,
    _database: TestDatabase,
}

impl App {
    async fn spawn(engine: Engine) -> Self {
        Self::spawn_with(engine, |layer| layer).await
    }

    /// Serves `POST /things` behind the layer `configure` finishes.
    async fn spawn_with(
        engine: Engine,
        configure: impl FnOnce(IdempotencyLayer) -> IdempotencyLayer,
    ) -> Self {
        let database = match engine {
            Engine::Sqlite => TestDatabase::sqlite(),
            Engine::Postgres => TestDatabase::postgres().await.unwrap(),
        };
        let db = Db::connect(&database.url, 5).await.unwrap();
        idempotency::migrate(&db).await.unwrap();
        let clock = ManualClock::now();
        let shared: SharedClock = clock.clone();
        let layer = configure(
            IdempotencyLayer::new(db.clone(), shared).principal(Arc::new(|parts: &Parts| {
                parts
                    .headers
                    .get("x-test-principal")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            })),
        );
        let things = Things::new();
        let mut settings =
            HttpSettings::loopback(std::path::Path::new(""), std::path::Path::new(""));
        settings.insecure_http = true;
        let routes = Router::new()
            .route("/things", post(create_thing).layer(layer.clone()))
            .with_state(things.clone());
        let app = standard_layers(routes, ServiceName("idempotency-test"), &settings);
        let server = HttpServer::bind(&settings).unwrap();
        let url = server.base_url();
        let (stop, shutdown) = Shutdown::new();
        tokio::spawn(server.run_until_stopped(app, shutdown));
        let client = emporium_http::tls::client(None, Duration::from_secs(30)).unwrap();
        Self {
            caller: Caller { url, client },
            things,
            layer,
            clock,
            db,
            _stop: stop,
            _database: database,
        }
    }

    async fn post(&self, principal: &str, key: &str, body: &Value) -> Reply {
        self.caller.post(Some(principal), Some(key), body).await
    }

    /// Rows stored for this caller and key (0 or 1).
    async fn rows(&self, principal: &str, key: &str) -> i64 {
        const SQL: &str = "SELECT COUNT(*) FROM idempotency_keys WHERE principal = $1 AND key = $2";
        emporium_db::on_db!(&self.db, |pool| sqlx::query_scalar::<_, i64>(SQL)
            .bind(principal)
            .bind(key)
            .fetch_one(pool)
            .await
            .unwrap())
    }

    /// Rows stored for every caller and key.
    async fn all_rows(&self) -> i64 {
        const SQL: &str = "SELECT COUNT(*) FROM idempotency_keys";
        emporium_db::on_db!(&self.db, |pool| sqlx::query_scalar::<_, i64>(SQL)
            .fetch_one(pool)
            .await
            .unwrap())
    }

    /// The row of a request whose executor died while holding its lease.
    async fn insert_in_flight(&self, principal: &str, key: &str, body: &Value, lease_ms: i64) {
        const SQL: &str = "INSERT INTO idempotency_keys \
            (principal, key, fingerprint, state, locked_until, created_at) \
            VALUES ($1, $2, $3, 'in_flight', $4, $5)";
        let now = self.clock.now_ms();
        let fingerprint =
            idempotency::fingerprint(&Method::POST, "/things", &serde_json::to_vec(body).unwrap());
        emporium_db::on_db!(&self.db, |pool| {
            sqlx::query(SQL)
                .bind(principal)
                .bind(key)
                .bind(&fingerprint)
                .bind(now + lease_ms)
                .bind(now)
                .execute(pool)
                .await
                .unwrap();
        });
    }

    /// Waits (ten seconds at the most) until the handler has begun `n` runs.
    async fn wait_for_runs(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.things.runs() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "run {n} never started"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Posts again as `principal` with `key`: the stored answer of thing `id`
    /// is replayed, and the handler does not run. Returns the replay.
    async fn replays(&self, principal: &str, key: &str, body: &Value, id: &str) -> Reply {
        let runs = self.things.runs();
        let again = self.post(principal, key, body).await;
        assert_eq!(again.status, 201, "{again:?}");
        assert!(again.replayed(), "{again:?}");
        assert_eq!(again.json()["id"], id, "{again:?}");
        assert_eq!(self.things.runs(), runs, "a replay runs nothing");
        again
    }

    /// A retry that runs the handler once more and creates a thing, which a
    /// further retry then replays.
    async fn retry_creates_then_replays(&self, principal: &str, key: &str, body: &Value) {
        let runs = self.things.runs();
        let id = self.post(principal, key, body).await.created();
        assert_eq!(self.things.runs(), runs + 1);
        self.replays(principal, key, body, &id).await;
    }
}

const IN_USE_TITLE: &str = "A request with this idempotency key is in progress.";
const REUSED_TITLE: &str = "This idempotency key was used with a different request.";
const MISSING_TITLE: &str = "The Idempotency-Key header is required.";
const INVALID_TITLE: &str = "The Idempotency-Key header is invalid.";

async fn a_retry_replays_the_first_answer(engine: Engine) {
    let app = App::spawn(engine).await;
    let body = json!({"name": "lamp"});
    let first = app.post("alice", "key-1", &body).await;
    let id = first.created();
    assert_eq!(first.json()["name"], "lamp");

    let again = app.replays("alice", "key-1", &body, &id).await;
    assert_eq!(again.body, first.body, "the same bytes, the same id");
    assert_eq!(again.header("location"), first.header("location"));
    assert_eq!(again.header("content-type"), Some("application/json"));
    // The outer layers still mark the replay as theirs.
    assert!(again.header("x-request-id").is_some());
    assert_eq!(again.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(app.things.runs(), 1);
    assert_eq!(app.rows("alice", "key-1").await, 1);
}

async fn concurrent_requests_with_one_key_execute_once(engine: Engine) {
    let app = App::spawn(engine).await;
    let body = json!({"name": "held", "hold": true});
    let (sent, mut replies) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..10 {
        let caller = app.caller.clone();
        let sent = sent.clone();
        let body = body.clone();
        tokio::spawn(async move {
            let reply = caller.post(Some("alice"), Some("same-key"), &body).await;
            let _ = sent.send(reply);
        });
    }
    // The one that runs is held at the gate: the nine others are answered first.
    for _ in 0..9 {
        let reply = tokio::time::timeout(Duration::from_secs(20), replies.recv())
            .await
            .expect("the other requests are answered while the first runs")
            .unwrap();
        reply.problem(409, "idempotency-key-in-use", IN_USE_TITLE);
        assert_eq!(reply.header("retry-after"), Some("1"));
    }
    // The nine may be answered before the first reaches the handler.
    app.wait_for_runs(1).await;
    assert_eq!(app.things.runs(), 1);
    app.things.gate.add_permits(1);
    let first = tokio::time::timeout(Duration::from_secs(20), replies.recv())
        .await
        .unwrap()
        .unwrap();
    let id = first.created();
    assert_eq!(app.things.runs(), 1);

    let again = app.replays("alice", "same-key", &body, &id).await;
    assert_eq!(again.body, first.body);
    assert_eq!(app.things.runs(), 1);
}

async fn a_key_reused_with_another_body_is_refused(engine: Engine) {
    let app = App::spawn(engine).await;
    let first = app.post("alice", "key-1", &json!({"name": "lamp"})).await;
    let id = first.created();
    let other = app.post("alice", "key-1", &json!({"name": "chair"})).await;
    other.problem(422, "idempotency-key-reused", REUSED_TITLE);
    assert_eq!(app.things.runs(), 1);
    // The stored answer is untouched.
    let again = app
        .replays("alice", "key-1", &json!({"name": "lamp"}), &id)
        .await;
    assert_eq!(again.body, first.body);
    assert_eq!(app.things.runs(), 1);
}

async fn keys_belong_to_their_caller(engine: Engine) {
    let app = App::spawn(engine).await;
    let body = json!({"name": "lamp"});
    let alices = app.post("alice", "shared-key", &body).await;
    let bobs = app.post("bob", "shared-key", &body).await;
    let alice_id = alices.created();
    let bob_id = bobs.created();
    assert_ne!(alice_id, bob_id);
    assert_eq!(app.things.runs(), 2);
    // Bob may even send another body: the key is his own.
    let bobs_other = app.post("bob", "other-key", &json!({"name": "x"})).await;
    bobs_other.created();
    app.replays("alice", "shared-key", &body, &alice_id).await;
    app.replays("bob", "shared-key", &body, &bob_id).await;
    assert_eq!(app.things.runs(), 3);
}

async fn keys_are_required_and_checked(engine: Engine) {
    let app = App::spawn(engine).await;
    let body = json!({"name": "lamp"});
    let missing = app.caller.post(Some("alice"), None, &body).await;
    missing.problem(400, "idempotency-key-missing", MISSING_TITLE);
    let too_long = "k".repeat(256);
    for key in ["", too_long.as_str(), "tab\there", "with space"] {
        let reply = app.post("alice", key, &body).await;
        reply.problem(400, "idempotency-key-invalid", INVALID_TITLE);
    }
    assert_eq!(app.things.runs(), 0);
    assert_eq!(app.all_rows().await, 0);

    let longest = "k".repeat(255);
    app.post("alice", &longest, &body).await.created();
    assert_eq!(app.things.runs(), 1);

    // Without a caller the request passes through, for the handler to judge.
    let anonymous = app.caller.post(None, None, &body).await;
    anonymous.created();
    assert_eq!(app.things.runs(), 2);
    assert_eq!(app.all_rows().await, 1);
}

async fn keys_expire_after_the_ttl_and_are_purged(engine: Engine) {
    // No background purge within the test: the explicit one is counted.
    let app = App::spawn_with(engine, |layer| {
        layer.timing(Timing {
            purge_interval: Duration::from_secs(48 * 60 * 60),
            ..Timing::default()
        })
    })
    .await;
    let body = json!({"name": "lamp"});
    let first = app.post("alice", "key-a", &body).await;
    let first_id = first.created();
    app.post("alice", "key-b", &body).await.created();
    assert_eq!(app.things.runs(), 2);

    // A key lives 24 h.
    app.clock.advance(Duration::from_secs(24 * 60 * 60));
    app.replays("alice", "key-a", &body, &first_id).await;
    assert_eq!(app.things.runs(), 2);

    app.clock.advance(Duration::from_millis(1));
    let renewed = app.post("alice", "key-a", &body).await;
    let renewed_id = renewed.created();
    assert_ne!(renewed_id, first_id);
    assert_eq!(app.things.runs(), 3);

    assert_eq!(app.layer.purge_expired().await.unwrap(), 1, "key-b");
    assert_eq!(app.layer.purge_expired().await.unwrap(), 0);
    assert_eq!(app.rows("alice", "key-b").await, 0);
    assert_eq!(app.rows("alice", "key-a").await, 1);
    app.replays("alice", "key-a", &body, &renewed_id).await;
    assert_eq!(app.things.runs(), 3);
}

async fn expired_keys_are_purged_in_the_background(engine: Engine) {
    let app = App::spawn(engine).await;
    let body = json!({"name": "lamp"});
    app.post("alice", "old-key", &body).await.created();
    app.clock
        .advance(Duration::from_secs(24 * 60 * 60) + Duration::from_millis(1));
    app.post("alice", "new-key", &body).await.created();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app.rows("alice", "old-key").await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the expired key is purged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(app.rows("alice", "new-key").await, 1);
}

async fn a_failed_execution_forgets_the_key(engine: Engine) {
    let app = App::spawn(engine).await;
    let body = json!({"name": "lamp"});
    app.things.fail_next.store(true, Ordering::SeqCst);
    let failed = app.post("alice", "key-1", &body).await;
    failed.problem(500, "internal", "Something went wrong on our side.");
    assert!(!failed.replayed());
    assert_eq!(app.rows("alice", "key-1").await, 0);
    assert_eq!(app.things.runs(), 1);

    app.retry_creates_then_replays("alice", "key-1", &body)
        .await;
    assert_eq!(app.things.runs(), 2);
}

async fn a_key_whose_executor_died_is_taken_over_after_its_lease(engine: Engine) {
    let app = App::spawn(engine).await;
    let body = json!({"name": "lamp"});
    // A first executor claimed the key (60 s lease) and crashed.
    app.insert_in_flight("alice", "key-1", &body, 60_000).await;

    let during = app.post("alice", "key-1", &body).await;
    during.problem(409, "idempotency-key-in-use", IN_USE_TITLE);
    let other = app.post("alice", "key-1", &json!({"name": "chair"})).await;
    other.problem(422, "idempotency-key-reused", REUSED_TITLE);
    app.clock.advance(Duration::from_secs(60));
    let at_the_end = app.post("alice", "key-1", &body).await;
    at_the_end.problem(409, "idempotency-key-in-use", IN_USE_TITLE);
    assert_eq!(app.things.runs(), 0);

    app.clock.advance(Duration::from_millis(1));
    app.retry_creates_then_replays("alice", "key-1", &body)
        .await;
    assert_eq!(app.things.runs(), 1);
}

/// A slow first executor whose lease ran out while it worked: the key went to
/// a retry, so the slow one's late answer reaches its own client but is never
/// stored over the retry's.
async fn an_executor_that_lost_its_lease_does_not_store_its_answer(engine: Engine) {
    let app = App::spawn(engine).await;
    let body = json!({"name": "slow", "hold": true});
    let post_in_a_task = || {
        let (caller, body) = (app.caller.clone(), body.clone());
        tokio::spawn(async move { caller.post(Some("alice"), Some("lease-key"), &body).await })
    };
    let slow = post_in_a_task();
    app.wait_for_runs(1).await;
    app.clock.advance(Duration::from_millis(60_001));
    let retry = post_in_a_task();
    app.wait_for_runs(2).await;
    // The gate lets them through in the order they came: the slow one first.
    app.things.gate.add_permits(1);
    let late = slow.await.unwrap().created();
    app.things.gate.add_permits(1);
    let kept = retry.await.unwrap().created();
    assert_ne!(late, kept);
    // The retry's answer is the stored one.
    app.replays("alice", "lease-key", &body, &kept).await;
    assert_eq!(app.things.runs(), 2);
}
