//! The typed client orders uses, against the real service.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use emporium_client::payments::{PaymentError, Payments};
use emporium_client::{ClientSettings, ServiceClient, StaticToken};
use emporium_contracts::payments::{AuthorizePayment, FailureReason, PaymentStatus};
use emporium_testkit::{both, https_client};
use uuid::Uuid;

use crate::helpers::{TestApp, cards};

fn client(app: &TestApp, token: &str) -> Payments {
    Payments::new(ServiceClient::new(
        https_client(),
        app.url("/").parse().unwrap(),
        Arc::new(StaticToken::new(token)),
        ClientSettings::default(),
    ))
}

both!(the_typed_client_moves_a_payment_through_its_life);
async fn the_typed_client_moves_a_payment_through_its_life(app: TestApp) {
    let payments = client(&app, &app.orders);
    let order = Uuid::now_v7();
    let request = AuthorizePayment {
        order_id: order,
        customer_id: app.customer_id,
        token: app.token(cards::APPROVES).await,
        amount: 2000,
        currency: "EUR".into(),
    };
    let p = payments.authorize(&request, None).await.unwrap();
    assert_eq!((p.status, p.authorized), (PaymentStatus::Authorized, 2000));
    let again = payments.authorize(&request, None).await.unwrap();
    assert_eq!(again.id, p.id);
    let other = AuthorizePayment {
        amount: 1,
        ..request.clone()
    };
    let e = payments.authorize(&other, None).await.unwrap_err();
    assert!(matches!(e, PaymentError::OrderHasPayment), "{e:?}");

    let p = payments.capture(order, Some(1500), None).await.unwrap();
    assert_eq!((p.status, p.captured), (PaymentStatus::Captured, 1500));
    let e = payments.void(order, None).await.unwrap_err();
    assert!(
        matches!(&e, PaymentError::Refused(kind, _) if kind == "illegal-transition"),
        "{e:?}"
    );
    let p = payments.refund(order, "r-1", 500, None).await.unwrap();
    assert_eq!(
        (p.status, p.refunded),
        (PaymentStatus::PartiallyRefunded, 500)
    );
    let p = payments.refund(order, "r-1", 500, None).await.unwrap();
    assert_eq!(p.refunded, 500, "the same key refunds once");
    let e = payments.refund(order, "r-2", 1001, None).await.unwrap_err();
    assert!(
        matches!(&e, PaymentError::Refused(kind, _) if kind == "refund-exceeds-captured"),
        "{e:?}"
    );
    let e = payments.refund(order, "r-1", 400, None).await.unwrap_err();
    assert!(matches!(e, PaymentError::Invalid(_)), "{e:?}");
    assert_eq!(payments.get(order, None).await.unwrap().refunded, 500);

    // Declined: a failed payment, not an error; the void of nothing is refused.
    let declined = AuthorizePayment {
        order_id: Uuid::now_v7(),
        token: app.token(cards::INSUFFICIENT).await,
        ..request
    };
    let p = payments.authorize(&declined, None).await.unwrap();
    assert_eq!(
        (p.status, p.failure_reason),
        (
            PaymentStatus::Failed,
            Some(FailureReason::InsufficientFunds)
        )
    );
    // Another client sees none of it.
    let shipping = client(&app, &app.shipping);
    let e = shipping.get(order, None).await.unwrap_err();
    assert!(matches!(e, PaymentError::NotFound), "{e:?}");
}
