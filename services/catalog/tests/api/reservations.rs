//! Reservations: all or nothing, idempotent, never overselling.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::both;
use crate::helpers::{Backend, TestApp, new_id, problem};

async fn reservations_are_all_or_nothing_from_few_warehouses(app: TestApp) {
    let (cup, cw) = app.stocked("CUP", &[3, 5]).await;
    let (pot, _) = app.stocked("POT", &[1]).await;
    let id = new_id();
    let r = app
        .reserve(&id, json!([{"product_id": cup, "quantity": 4}]))
        .await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "active");
    assert_eq!(
        v["lines"].as_array().unwrap().len(),
        1,
        "one warehouse can serve 4"
    );
    assert_eq!(v["lines"][0]["warehouse_id"], cw[1].as_str());

    // Two products, one short: nothing at all is reserved.
    let before = app.stock(&cup).await;
    let r = app
        .reserve(
            &new_id(),
            json!([{"product_id": cup, "quantity": 1}, {"product_id": pot, "quantity": 2}]),
        )
        .await;
    let body = problem(r, 409).await;
    assert_eq!(body["type"], "/problems/out-of-stock");
    assert!(body["detail"].as_str().unwrap().contains(&pot));
    assert_eq!(app.stock(&cup).await, before);

    // Split when no single warehouse can serve it.
    let r = app
        .reserve(&new_id(), json!([{"product_id": cup, "quantity": 4}]))
        .await;
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.json::<Value>().await.unwrap()["lines"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let p: Value = app
        .get(&format!("/api/v1/products/{cup}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(p["available"], 0);

    // Bad requests.
    problem(app.reserve(&new_id(), json!([])).await, 422).await;
    problem(
        app.reserve(&new_id(), json!([{"product_id": cup, "quantity": 0}]))
            .await,
        422,
    )
    .await;
    problem(
        app.reserve(
            &new_id(),
            json!([{"product_id": cup, "quantity": 1}, {"product_id": cup, "quantity": 1}]),
        )
        .await,
        422,
    )
    .await;
    problem(
        app.reserve(
            &new_id(),
            json!([{"product_id": "01900000-0000-7000-8000-000000000000", "quantity": 1}]),
        )
        .await,
        422,
    )
    .await;
    // Only services with the scope.
    let body = json!({"id": new_id(), "items": [{"product_id": pot, "quantity": 1}]});
    problem(
        app.post("/internal/v1/reservations")
            .bearer_auth(&app.admin)
            .json(&body)
            .send()
            .await
            .unwrap(),
        401,
    )
    .await;
    let other = crate::helpers::token(
        emporium_auth::TokenType::Service,
        vec![],
        Some("mail:send"),
        "mailer",
    );
    problem(
        app.post("/internal/v1/reservations")
            .bearer_auth(other)
            .json(&body)
            .send()
            .await
            .unwrap(),
        403,
    )
    .await;
}
both!(reservations_are_all_or_nothing_from_few_warehouses);

async fn reservations_are_idempotent_even_when_duplicates_race(app: TestApp) {
    let (product, _) = app.stocked("LAMP", &[10]).await;
    let id = new_id();
    let items = json!([{"product_id": product, "quantity": 3}]);
    let statuses: Vec<u16> = join_all((0..10).map(|_| app.reserve(&id, items.clone())))
        .await
        .into_iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        9,
        "{statuses:?}"
    );
    assert_eq!(app.stock(&product).await[0]["reserved"], 3, "reserved once");
    let body = problem(
        app.reserve(&id, json!([{"product_id": product, "quantity": 4}]))
            .await,
        409,
    )
    .await;
    assert_eq!(body["type"], "/problems/reservation-mismatch");

    // Release is idempotent; commit after release is refused.
    let release = || {
        app.post(&format!("/internal/v1/reservations/{id}/release"))
            .bearer_auth(&app.orders)
            .send()
    };
    assert_eq!(
        release().await.unwrap().json::<Value>().await.unwrap()["status"],
        "released"
    );
    assert_eq!(release().await.unwrap().status(), 200);
    assert_eq!(app.stock(&product).await[0]["reserved"], 0);
    let r = app
        .post(&format!("/internal/v1/reservations/{id}/commit"))
        .bearer_auth(&app.orders)
        .send()
        .await
        .unwrap();
    problem(r, 409).await;
    problem(
        app.post(&format!("/internal/v1/reservations/{}/release", new_id()))
            .bearer_auth(&app.orders)
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
}
both!(reservations_are_idempotent_even_when_duplicates_race);

async fn commit_ships_reserved_stock(app: TestApp) {
    let (product, _) = app.stocked("VASE", &[5]).await;
    let id = new_id();
    app.reserve(&id, json!([{"product_id": product, "quantity": 2}]))
        .await;
    let r = app
        .post(&format!("/internal/v1/reservations/{id}/commit"))
        .bearer_auth(&app.orders)
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "committed");
    let s = &app.stock(&product).await[0];
    assert_eq!(
        (
            s["on_hand"].as_i64().unwrap(),
            s["reserved"].as_i64().unwrap()
        ),
        (3, 0)
    );
    let again = app
        .post(&format!("/internal/v1/reservations/{id}/commit"))
        .bearer_auth(&app.orders)
        .send()
        .await
        .unwrap();
    assert_eq!(
        again.status(),
        200,
        "a repeated commit is a retry, not a second shipment"
    );
    assert_eq!(app.stock(&product).await[0]["on_hand"], 3);
}
both!(commit_ships_reserved_stock);

async fn expired_reservations_are_released_by_the_sweeper(app: TestApp) {
    let (product, _) = app.stocked("CLOCK", &[2]).await;
    let id = new_id();
    assert_eq!(
        app.reserve(&id, json!([{"product_id": product, "quantity": 2}]))
            .await
            .status(),
        201
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r: Value = app
            .get(&format!("/internal/v1/reservations/{id}"))
            .bearer_auth(&app.orders)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if r["status"] == "expired" {
            break;
        }
        assert!(Instant::now() < deadline, "never expired: {r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.stock(&product).await[0]["reserved"], 0);
    let page: Value = app
        .as_admin(
            reqwest::Method::GET,
            &format!("/api/v1/stock/movements?product_id={product}"),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let last = page["items"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["kind"], "expire");
    assert_eq!(last["actor"], "sweeper");
}
both!(
    expired_reservations_are_released_by_the_sweeper,
    [
        ("reservations.ttl_secs", "1"),
        ("reservations.sweep_every_ms", "100")
    ]
);

/// 100 buyers race for 10 units split over two warehouses.
async fn race(apps: &[&TestApp], product: &str) -> usize {
    let attempts = (0..100).map(|i| {
        let app = apps[i % apps.len()];
        let product = product.to_owned();
        async move {
            app.reserve(&new_id(), json!([{"product_id": product, "quantity": 1}]))
                .await
                .status()
                .as_u16()
        }
    });
    let statuses = join_all(attempts).await;
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 409),
        "{statuses:?}"
    );
    statuses.iter().filter(|s| **s == 201).count()
}

async fn concurrent_reservations_never_oversell(app: TestApp) {
    let (product, _) = app.stocked("LAST-UNITS", &[6, 4]).await;
    assert_eq!(race(&[&app], &product).await, 10);
    let stock = app.stock(&product).await;
    for s in &stock {
        assert_eq!(s["reserved"], s["on_hand"], "{s}");
    }
    assert_eq!(
        stock
            .iter()
            .map(|s| s["reserved"].as_i64().unwrap())
            .sum::<i64>(),
        10
    );
}
both!(concurrent_reservations_never_oversell);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_postgres_never_oversell() {
    let first = TestApp::spawn(Backend::Postgres, &[]).await;
    let second = first.replica().await;
    let (product, _) = first.stocked("SHARED", &[6, 4]).await;
    assert_eq!(race(&[&first, &second], &product).await, 10);
    let reserved: i64 = first
        .stock(&product)
        .await
        .iter()
        .map(|s| s["reserved"].as_i64().unwrap())
        .sum();
    assert_eq!(reserved, 10);
}

async fn reservations_belong_to_the_client_that_made_them(app: TestApp) {
    let (product, _) = app.stocked("KETTLE", &[5]).await;
    let id = new_id();
    let items = json!([{"product_id": product, "quantity": 2}]);
    assert_eq!(app.reserve(&id, items.clone()).await.status(), 201);

    // To another client it does not exist.
    problem(
        app.get(&format!("/internal/v1/reservations/{id}"))
            .bearer_auth(&app.shipping)
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
    for action in ["release", "commit"] {
        problem(
            app.post(&format!("/internal/v1/reservations/{id}/{action}"))
                .bearer_auth(&app.shipping)
                .send()
                .await
                .unwrap(),
            404,
        )
        .await;
    }
    let s = &app.stock(&product).await[0];
    assert_eq!(
        (s["on_hand"].as_i64(), s["reserved"].as_i64()),
        (Some(5), Some(2))
    );
    // Its id is taken, even with the same items: no reading it back through a retry.
    let body = problem(app.reserve_as(&app.shipping, &id, items.clone()).await, 409).await;
    assert_eq!(body["type"], "/problems/reservation-id-taken");
    assert!(body.get("lines").is_none());
    assert_eq!(app.stock(&product).await[0]["reserved"], 2);

    // The owner still sees, retries and commits it.
    let r: Value = app
        .get(&format!("/internal/v1/reservations/{id}"))
        .bearer_auth(&app.orders)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["status"], "active");
    assert_eq!(app.reserve(&id, items).await.status(), 200);
    let r = app
        .post(&format!("/internal/v1/reservations/{id}/commit"))
        .bearer_auth(&app.orders)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let s = &app.stock(&product).await[0];
    assert_eq!(
        (s["on_hand"].as_i64(), s["reserved"].as_i64()),
        (Some(3), Some(0))
    );

    // The other client's own reservations work as ever.
    let theirs = new_id();
    assert_eq!(
        app.reserve_as(
            &app.shipping,
            &theirs,
            json!([{"product_id": product, "quantity": 1}])
        )
        .await
        .status(),
        201
    );
    problem(
        app.post(&format!("/internal/v1/reservations/{theirs}/release"))
            .bearer_auth(&app.orders)
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
    let r = app
        .post(&format!("/internal/v1/reservations/{theirs}/release"))
        .bearer_auth(&app.shipping)
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "released");
}
both!(reservations_belong_to_the_client_that_made_them);

async fn a_reservation_past_its_expiry_is_never_committed(app: TestApp) {
    let (product, _) = app.stocked("HOURGLASS", &[4]).await;
    let id = new_id();
    assert_eq!(
        app.reserve(&id, json!([{"product_id": product, "quantity": 3}]))
            .await
            .status(),
        201
    );
    // The sweeper ran once at start and sleeps for an hour: only the commit sees the expiry.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let commit = || {
        app.post(&format!("/internal/v1/reservations/{id}/commit"))
            .bearer_auth(&app.orders)
            .send()
    };
    let body = problem(commit().await.unwrap(), 409).await;
    assert_eq!(body["type"], "/problems/reservation-expired");
    let s = &app.stock(&product).await[0];
    assert_eq!(
        (s["on_hand"].as_i64(), s["reserved"].as_i64()),
        (Some(4), Some(0)),
        "nothing shipped; the reserved stock is back on sale"
    );
    let r: Value = app
        .get(&format!("/internal/v1/reservations/{id}"))
        .bearer_auth(&app.orders)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["status"], "expired");
    let body = problem(commit().await.unwrap(), 409).await;
    assert_eq!(body["type"], "/problems/reservation-settled");
    assert_eq!(app.stock(&product).await[0]["on_hand"], 4);
}
both!(
    a_reservation_past_its_expiry_is_never_committed,
    [
        ("reservations.ttl_secs", "1"),
        ("reservations.sweep_every_ms", "3600000")
    ]
);
