use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use emporium_contracts::provider::Notification;
use emporium_db::testing::TestDatabase;
use emporium_sandbox::{Application, FaultSwitch, SandboxSettings};
use emporium_testkit::{Backend, Endpoint, Running, TestService, database, run_in_background};
use reqwest::{RequestBuilder, Response};
use serde_json::{Value, json};
use uuid::Uuid;

pub use emporium_testkit::{problem, problem_of};

pub const API_KEY: &str = "sk_test_0123456789abcdef";

/// What notifications are signed with in tests.
pub const WEBHOOK_SECRET: &str = "whsec_test_0123456789abcdef0123456789abcdef";

/// The `webhook_url` that [`with_webhooks`] sets: spawning replaces it with
/// the address of the test's own [`Receiver`].
const RECEIVER: &str = "http://receiver.invalid/webhooks";

pub struct TestApp {
    _server: Running,
    http: Endpoint,
    _db: Arc<TestDatabase>,
    /// The sandbox's store, to see what it recorded (and to seed it).
    pub store: emporium_sandbox::store::Store,
    /// The running sandbox's faults.
    pub faults: FaultSwitch,
    /// The merchant's endpoint, for a sandbox spawned [`with_webhooks`].
    receiver: Option<Receiver>,
}

impl std::ops::Deref for TestApp {
    type Target = Endpoint;

    fn deref(&self) -> &Endpoint {
        &self.http
    }
}

async fn migrate(url: String) -> anyhow::Result<()> {
    emporium_sandbox::store::Store::open(&url, 1)
        .await
        .map(drop)
}

impl TestService for TestApp {
    type Settings = SandboxSettings;

    async fn spawn(backend: Backend, tweak: impl FnOnce(&mut SandboxSettings) + Send) -> Self {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let db = database(backend, "sandbox", env!("CARGO_MANIFEST_DIR"), migrate).await;
        let key = [("sandbox.api_key", API_KEY)];
        let defaults = emporium_sandbox::config::DEFAULTS;
        let mut settings: SandboxSettings =
            emporium_testkit::service_settings("sandbox-provider", defaults, &db.url, &key);
        tweak(&mut settings);
        let receiver = if settings.sandbox.webhook_url == RECEIVER {
            let (receiver, url) = Receiver::start().await;
            settings.sandbox.webhook_url = url;
            Some(receiver)
        } else {
            None
        };
        let app = Application::build(settings).await.unwrap();
        let store = app.store().clone();
        let faults = app.faults();
        Self {
            http: Endpoint::new(app.base_url()),
            _server: run_in_background(|shutdown| app.run_until_stopped(shutdown)),
            _db: Arc::new(db),
            store,
            faults,
            receiver,
        }
    }
}

/// Settings with webhooks, for `both!(test, crate::helpers::with_webhooks)`:
/// notifications go to the test's [`Receiver`] ([`TestApp::receiver`]), due
/// 50 ms after their capture, and a refused one goes again 50 ms later (then
/// 100, 200, …).
pub fn with_webhooks(s: &mut SandboxSettings) {
    s.sandbox.webhook_url = RECEIVER.into();
    s.sandbox.webhook_secret = emporium_config::Secret::new(WEBHOOK_SECRET);
    // The receiver is plain HTTP; the CA only spares the client the system's roots.
    s.sandbox.ca_cert = emporium_testkit::certs().ca().display().to_string();
    s.sandbox.notify_after_ms = 50;
    s.sandbox.retry_base_ms = 50;
}

impl TestApp {
    /// A call with the API key.
    pub fn call(&self, request: RequestBuilder) -> RequestBuilder {
        request.bearer_auth(API_KEY)
    }

    /// A keyed POST with the API key.
    pub async fn keyed(&self, path: &str, key: &str, body: &Value) -> Response {
        let request = self.call(self.post(path)).header("idempotency-key", key);
        request.json(body).send().await.unwrap()
    }

    /// The first answer that is not a transient failure (503, or none within
    /// half a second) of the request `make` builds, asked up to 200 times.
    pub async fn answered(&self, make: impl Fn() -> RequestBuilder) -> Response {
        for _ in 0..200 {
            match make().timeout(Duration::from_millis(500)).send().await {
                Ok(r) if r.status() != 503 => return r,
                Ok(_) => {}
                Err(e) => assert!(e.is_timeout(), "{e}"),
            }
        }
        panic!("no answer in 200 attempts");
    }

    /// A token for `number`.
    pub async fn token(&self, number: &str) -> String {
        let card = json!({"number": number, "exp_month": 12, "exp_year": 2031, "cvc": "123"});
        let r = self
            .answered(|| self.call(self.post("/v1/tokens")).json(&card))
            .await;
        assert_eq!(r.status(), 201);
        let body: Value = r.json().await.unwrap();
        body["token"].as_str().unwrap().to_owned()
    }

    /// A POST of `body` with the API key and no idempotency key.
    pub async fn send_json(&self, path: &str, body: &Value) -> Response {
        let request = self.call(self.post(path)).json(body);
        request.send().await.unwrap()
    }

    /// Asks to authorize `amount` EUR on a new token for `number` under
    /// `reference`, with a new key.
    pub async fn authorize_under(&self, number: &str, amount: i64, reference: Uuid) -> Response {
        let token = self.token(number).await;
        let body =
            json!({"token": token, "amount": amount, "currency": "EUR", "reference": reference});
        let key = Uuid::new_v4().to_string();
        self.keyed("/v1/authorizations", &key, &body).await
    }

    /// An authorization of `amount` EUR on a new token for `number`; its id.
    pub async fn authorized(&self, number: &str, amount: i64) -> String {
        self.authorized_under(number, amount, Uuid::new_v4()).await
    }

    /// An authorization of `amount` EUR on a new token for `number` under
    /// `reference`; its id.
    pub async fn authorized_under(&self, number: &str, amount: i64, reference: Uuid) -> String {
        let r = self.authorize_under(number, amount, reference).await;
        assert_eq!(r.status(), 201);
        let a: Value = r.json().await.unwrap();
        a["id"].as_str().unwrap().to_owned()
    }

    /// A technical cancel of `reference`, with the API key (no idempotency key).
    pub async fn cancel(&self, reference: Uuid) -> Response {
        self.send_json("/v1/cancellations", &json!({"reference": reference}))
            .await
    }

    /// The merchant's endpoint of a sandbox spawned [`with_webhooks`].
    pub fn receiver(&self) -> &Receiver {
        self.receiver
            .as_ref()
            .expect("the test's sandbox is spawned with_webhooks")
    }

    /// The provider's own record of an authorization.
    pub async fn record(&self, id: &str) -> Value {
        let path = format!("/v1/authorizations/{id}");
        let r = self.answered(|| self.call(self.get(&path))).await;
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    /// How many authorizations the sandbox made with `token`.
    pub async fn authorizations_with(&self, token: &str) -> i64 {
        const SQL: &str = "SELECT COUNT(*) FROM sandbox_authorizations WHERE token = $1";
        self.store.db().sql().scalar(SQL, (token,)).await.unwrap()
    }

    /// A token of an approving card put in the store directly, for tests
    /// whose sandbox fails every call.
    pub async fn token_without_faults(&self) -> String {
        let card = emporium_contracts::provider::CardToken {
            token: format!("tok_{}", uuid::Uuid::new_v4().simple()),
            brand: "visa".into(),
            last4: "4242".into(),
            exp_month: 12,
            exp_year: 2031,
        };
        let approve = emporium_sandbox::cards::Behaviour::Approve;
        self.store.insert_token(&card, approve, 0).await.unwrap();
        card.token
    }
}

/// A merchant's webhook endpoint for one test, on plain HTTP: it keeps every
/// delivery, and refuses (500) as many as it is told to before taking any.
#[derive(Clone, Default)]
pub struct Receiver(Arc<Received>);

#[derive(Default)]
struct Received {
    deliveries: Mutex<Vec<Delivery>>,
    refusals_left: AtomicUsize,
}

/// One POST the endpoint got, and what it answered.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub signature: String,
    pub content_type: String,
    pub body: Vec<u8>,
    pub answered: u16,
}

impl Receiver {
    /// Listens on a free port of 127.0.0.1; gives the URL to post to.
    async fn start() -> (Self, String) {
        let receiver = Self::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/webhooks", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .route("/webhooks", axum::routing::post(receive))
            .with_state(receiver.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (receiver, url)
    }

    /// Refuses the next `n` deliveries (500).
    pub fn refuse_next(&self, n: usize) {
        self.0.refusals_left.store(n, Ordering::SeqCst);
    }

    /// Every delivery so far, in the order they came.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.0.deliveries.lock().unwrap().clone()
    }

    /// The deliveries once there are `n` or more; fails after 10 seconds.
    pub async fn at_least(&self, n: usize) -> Vec<Delivery> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.deliveries();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} deliveries within 10 s",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn receive(
    State(r): State<Receiver>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let header = |name: &str| {
        let value = headers.get(name).and_then(|v| v.to_str().ok());
        value.unwrap_or_default().to_owned()
    };
    let refuse =
        r.0.refusals_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
    let status = if refuse {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    r.0.deliveries.lock().unwrap().push(Delivery {
        signature: header(emporium_contracts::provider::webhook::SIGNATURE_HEADER),
        content_type: header("content-type"),
        body: body.to_vec(),
        answered: status.as_u16(),
    });
    status
}

impl Delivery {
    pub fn notification(&self) -> Notification {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// Checks the signature against the body, the test's secret and the
    /// clock, as a merchant does; gives its timestamp.
    pub fn verify(&self) -> Result<i64, emporium_auth::webhook::SignatureError> {
        verify_signature(&self.signature, &self.body)
    }
}

/// A merchant's check of `signature` over `body`, with the test's secret, now.
pub fn verify_signature(
    signature: &str,
    body: &[u8],
) -> Result<i64, emporium_auth::webhook::SignatureError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    emporium_auth::webhook::verify(
        WEBHOOK_SECRET.as_bytes(),
        signature,
        body,
        i64::try_from(now).unwrap(),
        emporium_contracts::provider::webhook::TOLERANCE_SECS,
    )
}

/// Waits until `done` holds; fails after 10 seconds.
pub async fn eventually<F, Fut>(what: &str, done: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done().await {
        assert!(Instant::now() < deadline, "not within 10 s: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The ids a cancellation names as voided.
pub fn voided(cancellation: &Value) -> Vec<String> {
    let all = cancellation["voided"].as_array().unwrap();
    all.iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect()
}

/// The (kind, amount) of every operation in a provider's record.
pub fn operations(record: &Value) -> Vec<(&str, i64)> {
    let all = record["operations"].as_array().unwrap();
    all.iter()
        .map(|o| (o["kind"].as_str().unwrap(), o["amount"].as_i64().unwrap()))
        .collect()
}
