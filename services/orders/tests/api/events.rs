//! What orders says on the bus (an order placed, confirmed, rejected,
//! cancelled) and what it hears there: accounts' profile changes, applied once
//! each, and payments' late capture failures.

use std::time::{Duration, Instant};

use emporium_contracts::Event;
use emporium_contracts::accounts::{UserDeleted, UserProfileUpdated, UserRegistered};
use emporium_contracts::orders::{OrderCancelled, OrderConfirmed, OrderPlaced, OrderRejected};
use emporium_messaging::{Bus, Envelope, OutgoingEvent};
use emporium_testkit::events::{Recorder, listen, types};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, cards, ok};
use emporium_testkit::both;

/// Delivers `envelopes` on the bus, in order, as another service's relay
/// would. Each goes out under a fresh delivery id, so an envelope sent again
/// is delivered again (as a broker redelivers), not dropped by the bus.
async fn deliver(app: &TestApp, envelopes: &[&Envelope]) {
    let batch: Vec<OutgoingEvent> = envelopes
        .iter()
        .map(|e| OutgoingEvent {
            id: Uuid::now_v7(),
            event_type: e.event_type.clone(),
            envelope: e.to_json(),
        })
        .collect();
    app.bus.publish(&batch).await.unwrap();
}

/// The events recorded about `order`, in the order they arrived.
fn about<'a>(events: &'a [Envelope], order: &str) -> Vec<&'a Envelope> {
    events
        .iter()
        .filter(|e| e.data["order_id"] == order)
        .collect()
}

/// `customer` of the order as an admin sees it.
async fn customer_of(app: &TestApp, order: &str) -> Value {
    let seen = ok(app.get_order(&app.admin, order).await, 200).await;
    seen.get("customer")
        .cloned()
        .unwrap_or_else(|| panic!("no customer field: {seen}"))
}

/// Waits (10 s at most) until the order's `customer` is `expected`.
async fn wait_for_customer(app: &TestApp, order: &str, expected: &Value) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let customer = customer_of(app, order).await;
        if customer == *expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "customer is {customer}, not {expected}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (10 s at most) until orders holds a copy of `user`: the sign that
/// every account event delivered before that user's registration was handled
/// (the bus hands a consumer its events one at a time, in order).
async fn wait_for_marker(app: &TestApp, user: Uuid) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.state.0.carts.customer(user).await.unwrap().is_none() {
        assert!(Instant::now() < deadline, "{user} was never registered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A registration of a user nobody else knows, to deliver after others.
fn marker() -> (Uuid, Envelope) {
    let user = Uuid::now_v7();
    let event = UserRegistered {
        user_id: user,
        email: format!("marker-{}@example.com", user.simple()),
        name: "Marker".into(),
    };
    (user, Envelope::new(&event, Some(user.to_string()), None))
}

fn types_of(events: &[&Envelope]) -> Vec<String> {
    types(events.iter().copied())
        .into_iter()
        .map(str::to_owned)
        .collect()
}

/// Waits until `recorder` holds exactly `expected` about `order`, in order.
async fn wait_for_events(recorder: &Recorder, order: &str, expected: &[&str]) -> Vec<Envelope> {
    let what = format!("{expected:?} about order {order}");
    let seen = recorder
        .wait_until(Duration::from_secs(15), &what, |seen| {
            types_of(&about(seen, order)) == expected
        })
        .await;
    about(&seen, order).into_iter().cloned().collect()
}

// Orders announces each order's placement and how its checkout ended, and a
// cancel, each with the order's summary.
both!(orders_announce_placed_confirmed_rejected_and_cancelled);
async fn orders_announce_placed_confirmed_rejected_and_cancelled(app: TestApp) {
    let (recorder, _stop) = listen(
        &*app.bus,
        &[
            OrderPlaced::TYPE,
            OrderConfirmed::TYPE,
            OrderRejected::TYPE,
            OrderCancelled::TYPE,
        ],
    )
    .await;
    let product = app.product(10, 1500).await;
    let confirmed = app.order(&[(product, 2)], cards::APPROVES).await;
    assert_eq!(confirmed["status"], "confirmed", "{confirmed}");
    let confirmed = confirmed["id"].as_str().unwrap().to_owned();
    let declined = app.order(&[(product, 1)], cards::DECLINES).await;
    assert_eq!(declined["status"], "rejected", "{declined}");
    let declined = declined["id"].as_str().unwrap().to_owned();

    let events = wait_for_events(
        &recorder,
        &confirmed,
        &[OrderPlaced::TYPE, OrderConfirmed::TYPE],
    )
    .await;
    let items = json!([{"product_id": product, "quantity": 2}]);
    for (event, status) in events.iter().zip(["pending", "confirmed"]) {
        assert_eq!(event.source, "/emporium/orders");
        assert_eq!(event.subject.as_deref(), Some(confirmed.as_str()));
        let data = &event.data;
        assert_eq!(data["order_id"], confirmed.as_str(), "{data}");
        assert_eq!(data["customer_id"], json!(app.customer_id), "{data}");
        assert_eq!(data["status"], status, "{data}");
        assert_eq!(data["items"], items, "{data}");
        assert_eq!(data["total"], 3000, "{data}");
        assert_eq!(data["currency"], "EUR", "{data}");
        assert!(data.get("reason").is_none(), "{data}");
    }

    let events = wait_for_events(
        &recorder,
        &declined,
        &[OrderPlaced::TYPE, OrderRejected::TYPE],
    )
    .await;
    let rejected = &events[1].data;
    assert_eq!(rejected["order_id"], declined.as_str());
    assert_eq!(rejected["customer_id"], json!(app.customer_id));
    assert_eq!(rejected["status"], "rejected");
    assert_eq!(rejected["reason"], "payment_declined", "{rejected}");
    assert_eq!(
        rejected["items"],
        json!([{"product_id": product, "quantity": 1}])
    );
    assert_eq!(rejected["total"], 1500);
    assert_eq!(rejected["currency"], "EUR");

    // The customer cancels the confirmed order.
    let r = app.act(&app.customer, &confirmed, "cancel").await;
    assert_eq!(r.status(), 200);
    app.wait_for_status(&confirmed, "cancelled").await;
    let events = wait_for_events(
        &recorder,
        &confirmed,
        &[
            OrderPlaced::TYPE,
            OrderConfirmed::TYPE,
            OrderCancelled::TYPE,
        ],
    )
    .await;
    let cancelled = &events[2].data;
    assert_eq!(cancelled["order_id"], confirmed.as_str());
    assert_eq!(cancelled["customer_id"], json!(app.customer_id));
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["items"], items);
    assert_eq!(cancelled["total"], 3000);
    assert_eq!(cancelled["currency"], "EUR");
    // Each event once: every id distinct.
    let all = recorder.events();
    let mut ids: Vec<Uuid> = all.iter().map(|e| e.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), all.len(), "{:?}", types(&all));
    assert_eq!(all.len(), 5, "{:?}", types(&all));
}

// Orders keeps a copy of each customer's name and email from accounts'
// events, for admins; a deletion erases it and the customer's cart. Each
// event is applied once: one delivered again changes nothing.
both!(orders_keeps_a_copy_of_each_customer_from_accounts_events);
async fn orders_keeps_a_copy_of_each_customer_from_accounts_events(app: TestApp) {
    let product = app.product(10, 700).await;
    let order = app.order(&[(product, 1)], cards::APPROVES).await;
    let order = order["id"].as_str().unwrap().to_owned();
    ok(
        app.put_cart_item(&app.customer, product, json!(2)).await,
        200,
    )
    .await;
    ok(app.put_cart_item(&app.other, product, json!(1)).await, 200).await;
    // Nothing heard yet.
    assert_eq!(customer_of(&app, &order).await, Value::Null);

    let user = app.customer_id;
    let subject = || Some(user.to_string());
    let registered = Envelope::new(
        &UserRegistered {
            user_id: user,
            email: "ada@example.com".into(),
            name: "Ada Lovelace".into(),
        },
        subject(),
        None,
    );
    deliver(&app, &[&registered]).await;
    wait_for_customer(
        &app,
        &order,
        &json!({"name": "Ada Lovelace", "email": "ada@example.com"}),
    )
    .await;

    // A new name; the email stays.
    let renamed = Envelope::new(
        &UserProfileUpdated {
            user_id: user,
            name: "Ada King".into(),
        },
        subject(),
        None,
    );
    deliver(&app, &[&renamed]).await;
    wait_for_customer(
        &app,
        &order,
        &json!({"name": "Ada King", "email": "ada@example.com"}),
    )
    .await;
    let renamed_again = Envelope::new(
        &UserProfileUpdated {
            user_id: user,
            name: "Countess of Lovelace".into(),
        },
        subject(),
        None,
    );
    deliver(&app, &[&renamed_again]).await;
    let latest = json!({"name": "Countess of Lovelace", "email": "ada@example.com"});
    wait_for_customer(&app, &order, &latest).await;

    // The registration and the first rename again: applied already, so
    // nothing changes (once the marker behind them is handled, so were they).
    let (marked, marker_event) = marker();
    deliver(&app, &[&registered, &renamed, &marker_event]).await;
    wait_for_marker(&app, marked).await;
    assert_eq!(customer_of(&app, &order).await, latest);
    assert_eq!(
        app.state.0.carts.customer(user).await.unwrap(),
        Some((
            "Countess of Lovelace".to_owned(),
            "ada@example.com".to_owned()
        ))
    );

    // The account is deleted: the copy goes, and the cart with it (not
    // another customer's); the order itself stays.
    assert_eq!(app.state.0.carts.lines(user).await.unwrap(), [(product, 2)]);
    let deleted = Envelope::new(
        &UserDeleted {
            user_id: user,
            token_generation: None,
        },
        subject(),
        None,
    );
    deliver(&app, &[&deleted]).await;
    wait_for_customer(&app, &order, &Value::Null).await;
    assert_eq!(app.state.0.carts.customer(user).await.unwrap(), None);
    let lines = app.state.0.carts.lines(user).await.unwrap();
    assert!(lines.is_empty(), "{lines:?}");
    assert_eq!(
        app.state.0.carts.lines(app.other_id).await.unwrap(),
        [(product, 1)]
    );
    let seen = ok(app.get_order(&app.admin, &order).await, 200).await;
    assert_eq!(seen["status"], "confirmed", "{seen}");
    assert_eq!(seen["customer_id"], json!(user));

    // The registration delivered once more does not bring the copy back.
    let (marked, marker_event) = marker();
    deliver(&app, &[&registered, &marker_event]).await;
    wait_for_marker(&app, marked).await;
    assert_eq!(customer_of(&app, &order).await, Value::Null);
    assert_eq!(app.state.0.carts.customer(user).await.unwrap(), None);
}

// A capture the card network refuses after the order shipped: payments says
// so on the bus, and the order moves to `needs_attention` with the reason in
// words.
both!(a_late_capture_failure_moves_a_shipped_order_to_needs_attention);
async fn a_late_capture_failure_moves_a_shipped_order_to_needs_attention(app: TestApp) {
    let product = app.product(10, 2500).await;
    let order = app
        .order(&[(product, 1)], cards::LATE_CAPTURE_FAILURE)
        .await;
    assert_eq!(order["status"], "confirmed", "{order}");
    let id = order["id"].as_str().unwrap().to_owned();
    assert_eq!(order.get("attention"), Some(&Value::Null), "{order}");

    let shipped = ok(app.act(&app.admin, &id, "ship").await, 200).await;
    assert_eq!(shipped["status"], "shipped", "{shipped}");
    assert_eq!(shipped["payment"]["status"], "captured", "{shipped}");

    let order = app.wait_for_status(&id, "needs_attention").await;
    let attention = order["attention"].as_str().unwrap_or_default();
    assert!(!attention.trim().is_empty(), "{order}");
    let history = app.history(&id).await;
    assert_eq!(
        history[history.len().saturating_sub(5)..].to_vec(),
        [
            "ship_requested",
            "payment_captured",
            "stock_committed",
            "shipped",
            "needs_attention"
        ],
        "{history:?}"
    );
    // Payments holds the capture failed, and the goods stay shipped (the
    // stock is not given back by itself).
    let payment = app.payment(&id).await.unwrap();
    assert_eq!(payment["status"], "failed", "{payment}");
    assert_eq!(app.stock(product).await, (9, 0));
}

// A capture failure reported while the shipment that captured is still
// under way (orders stopped in the middle of it) is applied only once the
// shipment has finished: the shipment is not cut short with the stock held.
both!(a_capture_failure_during_a_shipment_waits_for_it);
async fn a_capture_failure_during_a_shipment_waits_for_it(mut app: TestApp) {
    use emporium_contracts::payments::{FailureReason, PaymentFailed};
    let product = app.product(10, 2500).await;
    let order = app.order(&[(product, 1)], cards::APPROVES).await;
    let id = order["id"].as_str().unwrap().to_owned();
    app.state.0.saga.stop_after_steps(1);
    assert_eq!(app.act(&app.admin, &id, "ship").await.status(), 503);
    let payment = app.payment(&id).await.unwrap();
    let failed = PaymentFailed {
        payment_id: payment["id"].as_str().unwrap().parse().unwrap(),
        order_id: id.parse().unwrap(),
        customer_id: app.customer_id,
        reason: FailureReason::CaptureFailed,
    };
    deliver(&app, &[&Envelope::new(&failed, Some(id.clone()), None)]).await;
    // Delivered and put back: the order is still in its shipment.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let history = app.history(&id).await;
    assert_eq!(
        history.last().map(String::as_str),
        Some("payment_captured"),
        "{history:?}"
    );
    app.restart().await;
    let shipped = ok(app.act(&app.admin, &id, "ship").await, 200).await;
    assert_eq!(shipped["status"], "shipped");
    app.wait_for_status(&id, "needs_attention").await;
    let history = app.history(&id).await;
    assert_eq!(
        history[history.len() - 4..],
        [
            "payment_captured",
            "stock_committed",
            "shipped",
            "needs_attention"
        ]
    );
    assert_eq!(app.stock(product).await, (9, 0));
}
