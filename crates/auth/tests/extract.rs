//! The extractors as a handler sees them: 401 for missing or bad tokens, 403
//! for a valid token without the role or scope.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::FromRef;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use emporium_auth::extract::Scope;
use emporium_auth::testing::{MemoryJwks, TestKey, claims};
use emporium_auth::{Admin, AuthUser, Role, ServiceCaller, TokenType, Verifier, VerifierSettings};
use tower::ServiceExt;

#[derive(Clone)]
struct State(Arc<Verifier>);

impl FromRef<State> for Arc<Verifier> {
    fn from_ref(s: &State) -> Self {
        s.0.clone()
    }
}

struct StockReserve;
impl Scope for StockReserve {
    const NAME: &'static str = "stock:reserve";
}

fn app(key: &TestKey) -> Router {
    let verifier = Verifier::new(
        VerifierSettings::new("iss", "aud"),
        MemoryJwks::with(&[key]),
    );
    Router::new()
        .route("/user", get(|u: AuthUser| async move { u.id.to_string() }))
        .route(
            "/admin",
            get(|Admin(u): Admin| async move { u.id.to_string() }),
        )
        .route(
            "/reserve",
            get(|s: ServiceCaller<StockReserve>| async move { s.client_id }),
        )
        .with_state(State(Arc::new(verifier)))
}

async fn call(app: &Router, path: &str, token: Option<&str>) -> StatusCode {
    let mut req = Request::get(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let response = app
        .clone()
        .oneshot(req.body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    if response.status() == StatusCode::UNAUTHORIZED {
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
    }
    response.status()
}

#[tokio::test]
async fn extractors_authenticate_and_authorise() {
    let key = TestKey::generate("k1");
    let app = app(&key);
    let user = "01900000-0000-7000-8000-000000000000";
    let sign = |sub: &str, token_type: TokenType, roles: Vec<Role>, scope: Option<&str>| {
        key.sign(&claims("iss", "aud", sub, token_type, roles, scope))
    };
    let customer = sign(user, TokenType::Access, vec![Role::Customer], None);
    let admin = sign(
        user,
        TokenType::Access,
        vec![Role::Customer, Role::Admin],
        None,
    );
    let orders = sign("orders", TokenType::Service, vec![], Some("stock:reserve"));
    let other = sign("mailer", TokenType::Service, vec![], Some("mail:send"));

    let cases = [
        ("/user", None, StatusCode::UNAUTHORIZED),
        ("/user", Some("junk"), StatusCode::UNAUTHORIZED),
        ("/user", Some(customer.as_str()), StatusCode::OK),
        ("/user", Some(orders.as_str()), StatusCode::UNAUTHORIZED),
        ("/admin", Some(customer.as_str()), StatusCode::FORBIDDEN),
        ("/admin", Some(admin.as_str()), StatusCode::OK),
        ("/reserve", Some(orders.as_str()), StatusCode::OK),
        ("/reserve", Some(other.as_str()), StatusCode::FORBIDDEN),
        (
            "/reserve",
            Some(customer.as_str()),
            StatusCode::UNAUTHORIZED,
        ),
    ];
    for (path, token, want) in cases {
        assert_eq!(call(&app, path, token).await, want, "{path}: {token:?}");
    }
}
