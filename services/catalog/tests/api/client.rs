//! The typed reservations client (`emporium_client::catalog`) against the real
//! catalog: what a saga gets back for each outcome.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use emporium_client::catalog::{LookupError, Products, ReservationError, Reservations};
use emporium_client::{ClientSettings, ServiceClient, StaticToken};
use emporium_contracts::reservations::{Reservation, ReservationStatus, ReserveItem};
use uuid::Uuid;

use emporium_auth::TokenType;

use crate::fixtures::on_hand_and_reserved;
use crate::helpers::{TestApp, token};
use emporium_testkit::both;

fn service_client(app: &TestApp, token: &str) -> ServiceClient {
    ServiceClient::new(
        app.client.clone(),
        reqwest::Url::parse(&app.base).unwrap(),
        Arc::new(StaticToken::new(token)),
        ClientSettings::default(),
    )
}

fn reservations(app: &TestApp, token: &str) -> Reservations {
    Reservations::new(service_client(app, token))
}

fn item(product: &str, quantity: i64) -> ReserveItem {
    ReserveItem {
        product_id: product.parse().unwrap(),
        quantity,
    }
}

/// `sku` with `on_hand` in one warehouse, and the typed client of `orders`,
/// which reserves `quantity` of it: (product, client, reservation id, reservation).
async fn stocked_and_reserved(
    app: &TestApp,
    sku: &str,
    on_hand: i64,
    quantity: i64,
) -> (String, Reservations, Uuid, Reservation) {
    let (product, _) = app.stocked(sku, &[on_hand]).await;
    let client = reservations(app, &app.orders);
    let id = Uuid::now_v7();
    let reserved = client
        .reserve(id, vec![item(&product, quantity)], None)
        .await
        .unwrap();
    (product, client, id, reserved)
}

async fn the_typed_client_gives_each_outcome_its_own_answer(app: TestApp) {
    let (product, client, id, reserved) = stocked_and_reserved(&app, "LANTERN", 5, 3).await;
    assert_eq!(reserved.id, id);
    assert_eq!(reserved.status, ReservationStatus::Active);
    assert_eq!(reserved.lines.len(), 1);
    assert_eq!(reserved.lines[0].quantity, 3);
    assert_eq!(on_hand_and_reserved(&app, &product).await, (5, 3));

    // A retried reserve finds the same reservation and holds nothing more.
    let again = client
        .reserve(id, vec![item(&product, 3)], None)
        .await
        .unwrap();
    assert_eq!(again, reserved);
    assert_eq!(on_hand_and_reserved(&app, &product).await, (5, 3));

    let mismatch = client
        .reserve(id, vec![item(&product, 2)], None)
        .await
        .unwrap_err();
    assert!(
        matches!(mismatch, ReservationError::Mismatch),
        "{mismatch:?}"
    );
    assert!(!mismatch.is_retryable());

    let short = client
        .reserve(Uuid::now_v7(), vec![item(&product, 3)], None)
        .await
        .unwrap_err();
    let ReservationError::OutOfStock(detail) = &short else {
        panic!("{short:?}")
    };
    assert!(detail.contains(&product), "{detail}");
    assert!(
        !short.is_retryable(),
        "out of stock compensates, never retries"
    );

    let unknown = client
        .reserve(
            Uuid::now_v7(),
            vec![item(&Uuid::now_v7().to_string(), 1)],
            None,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(unknown, ReservationError::Invalid(_)),
        "{unknown:?}"
    );

    // Another client's reservation does not exist for this one.
    let other = reservations(&app, &app.shipping);
    assert!(matches!(
        other.get(id, None).await.unwrap_err(),
        ReservationError::NotFound
    ));
    assert!(matches!(
        other.release(id, None).await.unwrap_err(),
        ReservationError::NotFound
    ));
    let taken = other
        .reserve(id, vec![item(&product, 3)], None)
        .await
        .unwrap_err();
    assert!(matches!(taken, ReservationError::IdTaken), "{taken:?}");

    // Release twice: the second is a retry and answers the same.
    let released = client.release(id, None).await.unwrap();
    assert_eq!(released.status, ReservationStatus::Released);
    assert_eq!(on_hand_and_reserved(&app, &product).await, (5, 0));
    let released_again = client.release(id, None).await.unwrap();
    assert_eq!(released_again.status, ReservationStatus::Released);
    let settled = client.commit(id, None).await.unwrap_err();
    assert!(
        matches!(settled, ReservationError::Settled(_)),
        "{settled:?}"
    );

    // Commit ships: on hand and reserved both fall.
    let shipped = Uuid::now_v7();
    client
        .reserve(shipped, vec![item(&product, 2)], None)
        .await
        .unwrap();
    let committed = client.commit(shipped, None).await.unwrap();
    assert_eq!(committed.status, ReservationStatus::Committed);
    assert_eq!(on_hand_and_reserved(&app, &product).await, (3, 0));
    assert_eq!(
        client.get(shipped, None).await.unwrap().status,
        ReservationStatus::Committed
    );
    let cannot_release = client.release(shipped, None).await.unwrap_err();
    assert!(
        matches!(cannot_release, ReservationError::Settled(_)),
        "{cannot_release:?}"
    );
}
both!(the_typed_client_gives_each_outcome_its_own_answer);

/// A compensation that comes after the sweeper expired the reservation is done:
/// the stock is already back.
async fn releasing_an_expired_reservation_is_a_finished_compensation(app: TestApp) {
    let (product, client, id, _) = stocked_and_reserved(&app, "SUNDIAL", 2, 2).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.get(id, None).await.unwrap().status != ReservationStatus::Expired {
        assert!(Instant::now() < deadline, "never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let released = client.release(id, None).await.unwrap();
    assert_eq!(released.status, ReservationStatus::Expired);
    assert_eq!(on_hand_and_reserved(&app, &product).await, (2, 0));
    let expired_commit = client.commit(id, None).await.unwrap_err();
    assert!(
        matches!(expired_commit, ReservationError::Expired),
        "{expired_commit:?}"
    );
}
both!(
    releasing_an_expired_reservation_is_a_finished_compensation,
    crate::fixtures::expiring(1, 100)
);

/// A commit that comes after the expiry, before the sweeper did, finds it
/// expired itself: the same answer for the saga.
async fn a_commit_past_the_expiry_is_expired(app: TestApp) {
    let (product, client, id, _) = stocked_and_reserved(&app, "HOURGLASS", 2, 2).await;
    app.clock.advance(Duration::from_secs(61));
    let late = client.commit(id, None).await.unwrap_err();
    assert!(matches!(late, ReservationError::Expired), "{late:?}");
    assert!(!late.is_retryable());
    assert_eq!(on_hand_and_reserved(&app, &product).await, (2, 0));
    assert_eq!(
        client.get(id, None).await.unwrap().status,
        ReservationStatus::Expired
    );
    // The compensation after it has nothing left to do.
    assert_eq!(
        client.release(id, None).await.unwrap().status,
        ReservationStatus::Expired
    );
}
both!(
    a_commit_past_the_expiry_is_expired,
    crate::fixtures::expiring(60, 3_600_000)
);

async fn a_token_without_the_scope_is_a_definite_refusal(app: TestApp) {
    let (product, _) = app.stocked("COMPASS", &[1]).await;
    // A service token with another scope: 403, and no second try. A person's
    // access token is no service token at all: 401, even after the client
    // asked for a fresh token once.
    let mailer = token(TokenType::Service, vec![], Some("mail:send"), "mailer");
    for (bearer, status, kind) in [
        (&mailer, 403, "forbidden"),
        (&app.customer, 401, "unauthorized"),
    ] {
        let refused = reservations(&app, bearer)
            .reserve(Uuid::now_v7(), vec![item(&product, 1)], None)
            .await
            .unwrap_err();
        let ReservationError::Call(call) = &refused else {
            panic!("{refused:?}")
        };
        let problem = call.problem().unwrap();
        assert_eq!((problem.status, problem.kind()), (status, kind), "{call:?}");
        assert!(!refused.is_retryable());
    }
    assert_eq!(on_hand_and_reserved(&app, &product).await, (1, 0));
}
both!(a_token_without_the_scope_is_a_definite_refusal);

/// Keep, restock and the product lookup as the orders saga sees them.
async fn the_typed_client_keeps_restocks_and_looks_up(app: TestApp) {
    let (product, client, id, _) = stocked_and_reserved(&app, "PARCEL", 5, 2).await;
    let kept = client.keep(id, None).await.unwrap();
    assert_eq!(kept.status, ReservationStatus::Active);
    assert_eq!(
        client.keep(id, None).await.unwrap().status,
        ReservationStatus::Active
    );
    client.commit(id, None).await.unwrap();
    assert_eq!(on_hand_and_reserved(&app, &product).await, (3, 0));

    // `stock:reserve` alone does not restock: a definite refusal.
    let refused = client.restock(id, None).await.unwrap_err();
    let ReservationError::Call(call) = &refused else {
        panic!("{refused:?}")
    };
    assert_eq!(call.status(), Some(403), "{call:?}");
    assert!(!refused.is_retryable());

    let both = "stock:reserve stock:adjust";
    let adjusting = reservations(
        &app,
        &token(TokenType::Service, vec![], Some(both), "orders"),
    );
    for _ in 0..2 {
        let restocked = adjusting.restock(id, None).await.unwrap();
        assert_eq!(restocked.status, ReservationStatus::Restocked);
        assert_eq!(on_hand_and_reserved(&app, &product).await, (5, 0));
    }
    let active = Uuid::now_v7();
    client
        .reserve(active, vec![item(&product, 1)], None)
        .await
        .unwrap();
    let early = adjusting.restock(active, None).await.unwrap_err();
    assert!(
        matches!(early, ReservationError::NotCommitted(_)),
        "{early:?}"
    );
    client.release(active, None).await.unwrap();
    let late = client.keep(active, None).await.unwrap_err();
    assert!(matches!(late, ReservationError::Settled(_)), "{late:?}");

    let products = Products::new(service_client(&app, &app.orders));
    let (known, unknown) = (product.parse::<Uuid>().unwrap(), Uuid::now_v7());
    let found = products
        .lookup(vec![unknown, known, known], None)
        .await
        .unwrap();
    assert_eq!(found.items.len(), 1, "{found:?}");
    assert_eq!(found.items[0].id, known);
    assert_eq!(found.items[0].sku, "PARCEL");
    assert_eq!(found.items[0].price.amount, 1999);
    assert_eq!(found.items[0].price.currency, "EUR");
    assert_eq!(found.items[0].available, 5);
    assert_eq!(found.missing, [unknown]);
    let none = products.lookup(vec![], None).await.unwrap_err();
    assert!(matches!(none, LookupError::Invalid(_)), "{none:?}");
    assert!(!none.is_retryable());
}
both!(the_typed_client_keeps_restocks_and_looks_up);
