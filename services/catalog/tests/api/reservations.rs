//! Reservations: all or nothing, idempotent, never overselling.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::fixtures::{
    available, json_of, on_hand_and_reserved, refused, refused_to, reservation, send, settle,
};
use crate::helpers::{Backend, TestApp, millis, new_id, problem, problem_of, wait_until};
use emporium_testkit::both;

async fn reservations_are_all_or_nothing_from_few_warehouses(app: TestApp) {
    let (cup, cw) = app.stocked("CUP", &[3, 5]).await;
    let (pot, _) = app.stocked("POT", &[1]).await;
    let four = json!([{"product_id": cup, "quantity": 4}]);
    let r = app.reserve(&new_id(), four.clone()).await;
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
    let r = app.reserve(&new_id(), four).await;
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.json::<Value>().await.unwrap()["lines"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(available(&app, &cup).await, 0);

    // Bad requests.
    let unknown = "01900000-0000-7000-8000-000000000000";
    for items in [
        json!([]),
        json!([{"product_id": cup, "quantity": 0}]),
        json!([{"product_id": cup, "quantity": 1}, {"product_id": cup, "quantity": 1}]),
        json!([{"product_id": unknown, "quantity": 1}]),
    ] {
        problem(app.reserve(&new_id(), items).await, 422).await;
    }
    // Only services with the scope.
    let body = json!({"id": new_id(), "items": [{"product_id": pot, "quantity": 1}]});
    let other = crate::helpers::token(
        emporium_auth::TokenType::Service,
        vec![],
        Some("mail:send"),
        "mailer",
    );
    let (admin, mailer) = (Some(app.admin.as_str()), Some(other.as_str()));
    let reserve = app.post("/internal/v1/reservations").json(&body);
    refused_to(reserve, &[(admin, 401), (mailer, 403)]).await;
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
    let more = json!([{"product_id": product, "quantity": 4}]);
    problem_of(app.reserve(&id, more).await, 409, "reservation-mismatch").await;

    // Release is idempotent; commit after release is refused.
    let release = || settle(&app, &app.orders, &id, "release");
    assert_eq!(
        release().await.json::<Value>().await.unwrap()["status"],
        "released"
    );
    assert_eq!(release().await.status(), 200);
    assert_eq!(app.stock(&product).await[0]["reserved"], 0);
    let r = settle(&app, &app.orders, &id, "commit").await;
    let body = problem_of(r, 409, "reservation-settled").await;
    assert_eq!(body["detail"], "The reservation is already released.");
    let (on_hand, _) = on_hand_and_reserved(&app, &product).await;
    assert_eq!(on_hand, 10, "nothing shipped");
    let unknown = settle(&app, &app.orders, &new_id(), "release").await;
    problem(unknown, 404).await;
}
both!(reservations_are_idempotent_even_when_duplicates_race);

async fn commit_ships_reserved_stock(app: TestApp) {
    let (product, _) = app.stocked("VASE", &[5]).await;
    let id = new_id();
    app.reserve(&id, json!([{"product_id": product, "quantity": 2}]))
        .await;
    let r = settle(&app, &app.orders, &id, "commit").await;
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "committed");
    assert_eq!(on_hand_and_reserved(&app, &product).await, (3, 0));
    let again = settle(&app, &app.orders, &id, "commit").await;
    let retry = "a repeated commit is a retry, not a second shipment";
    assert_eq!(again.status(), 200, "{retry}");
    assert_eq!(app.stock(&product).await[0]["on_hand"], 3);
}
both!(commit_ships_reserved_stock);

async fn expired_reservations_are_released_by_the_sweeper(app: TestApp) {
    let (product, _) = app.stocked("CLOCK", &[2]).await;
    let id = new_id();
    let all = json!([{"product_id": product, "quantity": 2}]);
    assert_eq!(app.reserve(&id, all).await.status(), 201);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = reservation(&app, &id).await;
        if r["status"] == "expired" {
            break;
        }
        assert!(Instant::now() < deadline, "never expired: {r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.stock(&product).await[0]["reserved"], 0);
    let movements = format!("/api/v1/stock/movements?product_id={product}");
    let page = json_of(app.as_admin(reqwest::Method::GET, &movements)).await;
    let last = page["items"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["kind"], "expire");
    assert_eq!(last["actor"], "sweeper");
    assert_eq!(last["reservation_id"], id.as_str());
    assert_eq!(
        (
            last["delta_on_hand"].as_i64(),
            last["delta_reserved"].as_i64()
        ),
        (Some(0), Some(-2))
    );
    app.assert_journal_replays(&product).await;
}
both!(
    expired_reservations_are_released_by_the_sweeper,
    crate::fixtures::expiring(1, 100)
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

/// After a race that sold out `product` (10 units over warehouses of 6 and
/// 4): every row is sold out on its own (`reserved <= on_hand` per row, not
/// only in total: 7 of 6 plus 3 of 4 is overselling too), and the journal
/// replays to the rows.
async fn assert_sold_out(app: &TestApp, product: &str) {
    let rows = app.assert_journal_replays(product).await;
    let mut held: Vec<(i64, i64)> = rows.values().copied().collect();
    held.sort();
    assert_eq!(held, [(4, 4), (6, 6)], "per warehouse (on_hand, reserved)");
}

async fn concurrent_reservations_never_oversell(app: TestApp) {
    let (product, _) = app.stocked("LAST-UNITS", &[6, 4]).await;
    assert_eq!(race(&[&app], &product).await, 10);
    assert_sold_out(&app, &product).await;
}
both!(concurrent_reservations_never_oversell);

/// Two instances (replicas) of the service on one PostgreSQL database.
async fn two_instances() -> (TestApp, TestApp) {
    let first = <TestApp as emporium_testkit::TestService>::spawn(Backend::Postgres, |_| {}).await;
    let second = first.replica().await;
    (first, second)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_postgres_never_oversell() {
    let (first, second) = two_instances().await;
    let (product, _) = first.stocked("SHARED", &[6, 4]).await;
    assert_eq!(race(&[&first, &second], &product).await, 10);
    assert_sold_out(&first, &product).await;
    assert_sold_out(&second, &product).await;
}

/// `buyers` baskets of one A and one B at once, each sent from its own task
/// and spread over `apps` (replicas): even buyers list A then B, odd ones B
/// then A. Every answer is 201 with one of each, or 409 `out-of-stock` (a
/// deadlock between two reservations would be a 500). Returns how many
/// baskets were reserved.
async fn basket_race(apps: &[&TestApp], a: &str, b: &str, buyers: usize) -> usize {
    let mut tasks = Vec::with_capacity(buyers);
    for i in 0..buyers {
        let app = apps[i % apps.len()];
        let client = app.client.clone();
        let url = app.url("/internal/v1/reservations");
        let token = app.orders.clone();
        let (first, second) = if i % 2 == 0 { (a, b) } else { (b, a) };
        let body = json!({"id": new_id(), "items": [
            {"product_id": first, "quantity": 1},
            {"product_id": second, "quantity": 1}
        ]});
        tasks.push(tokio::spawn(async move {
            let r = send(client.post(url.as_str()).bearer_auth(token).json(&body)).await;
            let status = r.status().as_u16();
            let answer: Value = r.json().await.unwrap_or(Value::Null);
            (status, answer)
        }));
    }
    let mut reserved = 0;
    for task in tasks {
        let (status, body) = task.await.unwrap();
        match status {
            201 => {
                let mut held: BTreeMap<String, i64> = BTreeMap::new();
                for line in body["lines"].as_array().unwrap() {
                    *held
                        .entry(line["product_id"].as_str().unwrap().to_owned())
                        .or_default() += line["quantity"].as_i64().unwrap();
                }
                assert_eq!(
                    held,
                    BTreeMap::from([(a.to_owned(), 1), (b.to_owned(), 1)]),
                    "{body}"
                );
                reserved += 1;
            }
            409 => assert_eq!(body["type"], "/problems/out-of-stock", "{body}"),
            other => panic!("a basket answered {other}: {body}"),
        }
    }
    reserved
}

/// After a basket race on A (50 units) and B (40): B sold out, A and B
/// reserved alike, every row within bounds and the journals replay.
async fn assert_baskets_sold(app: &TestApp, a: &str, b: &str, sold: i64) {
    let a_rows = app.assert_journal_replays(a).await;
    let b_rows = app.assert_journal_replays(b).await;
    let reserved =
        |rows: &BTreeMap<String, (i64, i64)>| rows.values().map(|(_, r)| *r).sum::<i64>();
    assert_eq!(reserved(&a_rows), sold, "{a_rows:?}");
    assert_eq!(reserved(&b_rows), sold, "{b_rows:?}");
    assert!(
        b_rows
            .values()
            .all(|(on_hand, reserved)| on_hand == reserved),
        "B is sold out in every warehouse: {b_rows:?}"
    );
}

/// Reservations lock stock rows in one fixed order (products by id, then
/// warehouses by id) whatever order the request lists them in, so baskets
/// listed A,B and B,A racing each other never deadlock (PostgreSQL would
/// abort one of the two: a 500) and never oversell.
async fn baskets_listed_in_opposite_orders_never_deadlock(app: TestApp) {
    let (a, _) = app.stocked("BASKET-A", &[30, 20]).await;
    let (b, _) = app.stocked("BASKET-B", &[25, 15]).await;
    assert_eq!(
        basket_race(&[&app], &a, &b, 100).await,
        40,
        "B has 40 units"
    );
    assert_baskets_sold(&app, &a, &b, 40).await;
}
both!(baskets_listed_in_opposite_orders_never_deadlock);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_postgres_take_opposite_baskets_without_deadlock() {
    let (first, second) = two_instances().await;
    let (a, _) = first.stocked("SHARED-A", &[30, 20]).await;
    let (b, _) = first.stocked("SHARED-B", &[25, 15]).await;
    let sold = basket_race(&[&first, &second], &a, &b, 100).await;
    assert_eq!(sold, 40, "B has 40 units");
    assert_baskets_sold(&first, &a, &b, 40).await;
}

async fn reservations_belong_to_the_client_that_made_them(app: TestApp) {
    let (product, _) = app.stocked("KETTLE", &[5]).await;
    let id = new_id();
    let items = json!([{"product_id": product, "quantity": 2}]);
    assert_eq!(app.reserve(&id, items.clone()).await.status(), 201);

    // To another client it does not exist.
    let read = app.get(&format!("/internal/v1/reservations/{id}"));
    refused(read.bearer_auth(&app.shipping), 404).await;
    for action in ["release", "commit"] {
        problem(settle(&app, &app.shipping, &id, action).await, 404).await;
    }
    assert_eq!(on_hand_and_reserved(&app, &product).await, (5, 2));
    // Its id is taken, even with the same items: no reading it back through a retry.
    let body = problem(app.reserve_as(&app.shipping, &id, items.clone()).await, 409).await;
    assert_eq!(body["type"], "/problems/reservation-id-taken");
    assert!(body.get("lines").is_none());
    assert_eq!(app.stock(&product).await[0]["reserved"], 2);

    // The owner still sees, retries and commits it.
    assert_eq!(reservation(&app, &id).await["status"], "active");
    assert_eq!(app.reserve(&id, items).await.status(), 200);
    let r = settle(&app, &app.orders, &id, "commit").await;
    assert_eq!(r.status(), 200);
    assert_eq!(on_hand_and_reserved(&app, &product).await, (3, 0));

    // The other client's own reservations work as ever.
    let theirs = new_id();
    let one = json!([{"product_id": product, "quantity": 1}]);
    let r = app.reserve_as(&app.shipping, &theirs, one).await;
    assert_eq!(r.status(), 201);
    problem(settle(&app, &app.orders, &theirs, "release").await, 404).await;
    let r = settle(&app, &app.shipping, &theirs, "release").await;
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "released");
}
both!(reservations_belong_to_the_client_that_made_them);

async fn a_reservation_past_its_expiry_is_never_committed(app: TestApp) {
    let (product, _) = app.stocked("HOURGLASS", &[4]).await;
    let id = new_id();
    let r = app
        .reserve(&id, json!([{"product_id": product, "quantity": 3}]))
        .await;
    assert_eq!(r.status(), 201);
    let expires_at = millis(
        r.json::<Value>().await.unwrap()["expires_at"]
            .as_str()
            .unwrap(),
    );
    // The sweeper ran once at start and sleeps for an hour: only the commit
    // sees the expiry, once the service's clock is moved past it.
    app.clock.advance(std::time::Duration::from_secs(61));
    let commit = || settle(&app, &app.orders, &id, "commit");
    problem_of(commit().await, 409, "reservation-expired").await;
    assert_eq!(
        on_hand_and_reserved(&app, &product).await,
        (4, 0),
        "nothing shipped; the reserved stock is back on sale"
    );
    assert_eq!(reservation(&app, &id).await["status"], "expired");
    problem_of(commit().await, 409, "reservation-settled").await;
    assert_eq!(app.stock(&product).await[0]["on_hand"], 4);
    // The refused commit expired the reservation, as the sweeper would have:
    // one `expire` movement giving the 3 back, nothing shipped.
    let journal = app.movements(Some(product.as_str()), 100).await;
    let settles: Vec<&Value> = journal
        .iter()
        .filter(|m| m["reservation_id"] == id.as_str() && m["kind"] != "reserve")
        .collect();
    assert_eq!(settles.len(), 1, "{settles:?}");
    let m = settles[0];
    assert_eq!(m["kind"], "expire", "{m}");
    assert_eq!(m["actor"], "service:orders", "{m}");
    assert_eq!(m["reason"], "reservation expired", "{m}");
    assert_eq!(
        (m["delta_on_hand"].as_i64(), m["delta_reserved"].as_i64()),
        (Some(0), Some(-3)),
        "{m}"
    );
    assert!(millis(m["at"].as_str().unwrap()) >= expires_at, "{m}");
    app.assert_journal_replays(&product).await;
}
both!(
    a_reservation_past_its_expiry_is_never_committed,
    crate::fixtures::expiring(60, 3600000)
);

/// The status a reservation has now, as its owner (`orders`) reads it.
async fn status_of(app: &TestApp, id: &str) -> String {
    let r = app
        .get(&format!("/internal/v1/reservations/{id}"))
        .bearer_auth(&app.orders)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "reservation {id}");
    r.json::<Value>().await.unwrap()["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A reservation's lines as (warehouse, product, quantity), sorted.
fn lines_of(reservation: &Value) -> Vec<(String, String, i64)> {
    let mut lines: Vec<(String, String, i64)> = reservation["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["warehouse_id"].as_str().unwrap().to_owned(),
                l["product_id"].as_str().unwrap().to_owned(),
                l["quantity"].as_i64().unwrap(),
            )
        })
        .collect();
    lines.sort();
    lines
}

/// One buyer of the mixed race below.
struct Order {
    id: String,
    /// `commit`, `release`, or `none` (left for the sweeper).
    action: &'static str,
    /// The reserve's status and body.
    reserved: u16,
    reservation: Value,
    /// The commit's or release's status and body.
    settled: Option<(u16, Value)>,
}

impl Order {
    /// How the reservation must have ended, given what the buyer was told:
    /// (status, journal kind of its settling movements, their actor).
    fn ending(&self) -> (&'static str, &'static str, &'static str) {
        match (self.action, &self.settled) {
            ("none", None) => ("expired", "expire", "sweeper"),
            ("commit", Some((200, body))) => {
                assert_eq!(body["status"], "committed", "{body}");
                ("committed", "commit", "service:orders")
            }
            // Committed after its expiry: the commit expired it itself.
            ("commit", Some((409, body))) if body["type"] == "/problems/reservation-expired" => {
                ("expired", "expire", "service:orders")
            }
            ("release", Some((200, body))) => {
                assert_eq!(body["status"], "released", "{body}");
                ("released", "release", "service:orders")
            }
            // The sweeper came first.
            (_, Some((409, body)))
                if body["type"] == "/problems/reservation-settled"
                    && body["detail"] == "The reservation is already expired." =>
            {
                ("expired", "expire", "sweeper")
            }
            (action, settled) => panic!("{action} of {} answered {settled:?}", self.id),
        }
    }
}

/// Thirty buyers at once reserve one or two products (listed in either
/// order), then commit, release, or leave the reservation to the sweeper.
/// Afterwards every reservation was settled exactly once, the way its buyer
/// was told, the journal holds one reserve and one settling movement per
/// line and nothing for refused reservations, and replays to the stock.
async fn the_journal_replays_after_reserves_commits_releases_and_expiries_race(app: TestApp) {
    let (cup, _) = app.stocked("MIX-CUP", &[6, 4]).await;
    let (pot, _) = app.stocked("MIX-POT", &[5]).await;
    let mut tasks = Vec::new();
    for i in 0..30usize {
        let client = app.client.clone();
        let base = app.url("/internal/v1/reservations");
        let token = app.orders.clone();
        let id = new_id();
        let items = match i % 3 {
            0 => json!([{"product_id": cup, "quantity": 1}]),
            1 => json!([{"product_id": cup, "quantity": 1}, {"product_id": pot, "quantity": 1}]),
            _ => json!([{"product_id": pot, "quantity": 1}, {"product_id": cup, "quantity": 2}]),
        };
        let action = ["commit", "release", "none"][(i / 3) % 3];
        tasks.push(tokio::spawn(async move {
            let body = json!({"id": id, "items": items});
            let r = send(client.post(base.as_str()).bearer_auth(&token).json(&body)).await;
            let reserved = r.status().as_u16();
            let reservation: Value = r.json().await.unwrap();
            let settled = if reserved == 201 && action != "none" {
                let url = format!("{base}/{id}/{action}");
                let r = send(client.post(url).bearer_auth(&token)).await;
                let status = r.status().as_u16();
                Some((status, r.json::<Value>().await.unwrap()))
            } else {
                None
            };
            Order {
                id,
                action,
                reserved,
                reservation,
                settled,
            }
        }));
    }
    let mut orders = Vec::new();
    for task in tasks {
        orders.push(task.await.unwrap());
    }
    assert!(
        orders.iter().any(|o| o.reserved == 201),
        "nothing was reserved"
    );

    // The sweeper expires what nobody settled.
    let deadline = Instant::now() + Duration::from_secs(30);
    for order in orders.iter().filter(|o| o.reserved == 201) {
        while status_of(&app, &order.id).await == "active" {
            assert!(Instant::now() < deadline, "{} never expired", order.id);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    let mut journal = app.movements(Some(cup.as_str()), 100).await;
    journal.extend(app.movements(Some(pot.as_str()), 100).await);
    let mut shipped: BTreeMap<String, i64> = BTreeMap::new();
    for order in &orders {
        let mine: Vec<&Value> = journal
            .iter()
            .filter(|m| m["reservation_id"] == order.id.as_str())
            .collect();
        if order.reserved != 201 {
            assert_eq!(order.reserved, 409, "{}", order.reservation);
            assert_eq!(order.reservation["type"], "/problems/out-of-stock");
            assert!(
                mine.is_empty(),
                "a refused reservation moved stock: {mine:?}"
            );
            continue;
        }
        let (status, kind, actor) = order.ending();
        assert_eq!(status_of(&app, &order.id).await, status, "{}", order.id);
        let expires = millis(order.reservation["expires_at"].as_str().unwrap());
        let lines = lines_of(&order.reservation);
        let line = |m: &Value, quantity: i64| {
            (
                m["warehouse_id"].as_str().unwrap().to_owned(),
                m["product_id"].as_str().unwrap().to_owned(),
                quantity,
            )
        };
        let mut reserves = Vec::new();
        let mut settles = Vec::new();
        for m in &mine {
            if m["kind"] == "reserve" {
                assert_eq!(m["delta_on_hand"], 0, "{m}");
                reserves.push(line(m, m["delta_reserved"].as_i64().unwrap()));
            } else {
                assert_eq!(
                    (m["kind"].as_str(), m["actor"].as_str()),
                    (Some(kind), Some(actor)),
                    "{m}"
                );
                let quantity = -m["delta_reserved"].as_i64().unwrap();
                let on_hand = if kind == "commit" { -quantity } else { 0 };
                assert_eq!(m["delta_on_hand"], on_hand, "{m}");
                let at = millis(m["at"].as_str().unwrap());
                if kind == "commit" {
                    assert!(at < expires, "shipped after its expiry at {expires}: {m}");
                } else if kind == "expire" {
                    assert!(at >= expires, "expired before {expires}: {m}");
                }
                settles.push(line(m, quantity));
            }
        }
        reserves.sort();
        settles.sort();
        assert_eq!(reserves, lines, "reserve movements of {}", order.id);
        assert_eq!(settles, lines, "{} is settled once per line", order.id);
        if kind == "commit" {
            for (_, product, quantity) in &lines {
                *shipped.entry(product.clone()).or_default() += quantity;
            }
        }
    }
    for (product, stocked) in [(&cup, 10), (&pot, 5)] {
        let rows = app.assert_journal_replays(product).await;
        let on_hand: i64 = rows.values().map(|(o, _)| *o).sum();
        let reserved: i64 = rows.values().map(|(_, r)| *r).sum();
        assert_eq!(reserved, 0, "nothing is held any more: {rows:?}");
        assert_eq!(
            on_hand,
            stocked - shipped.get(product.as_str()).copied().unwrap_or(0),
            "{rows:?}"
        );
    }
}
both!(
    the_journal_replays_after_reserves_commits_releases_and_expiries_race,
    crate::fixtures::expiring(2, 50)
);

/// Commits sent around their reservation's expiry while the sweeper runs
/// every 10 ms: each reservation is settled once, by whoever came first.
/// A 200 means it shipped; a 409 `reservation-expired` means the commit
/// found it expired and released it; a 409 `reservation-settled` means the
/// sweeper had. The journal names the same settler, and replays.
async fn commits_racing_the_sweeper_settle_each_reservation_once(app: TestApp) {
    let (product, _) = app.stocked("RACE-CLOCK", &[20]).await;
    let ids: Vec<String> = (0..12).map(|_| new_id()).collect();
    let made = join_all(
        ids.iter()
            .map(|id| app.reserve(id, json!([{"product_id": product, "quantity": 1}]))),
    )
    .await;
    let mut expiries = Vec::new();
    for r in made {
        assert_eq!(r.status(), 201);
        let v: Value = r.json().await.unwrap();
        expiries.push(millis(v["expires_at"].as_str().unwrap()));
    }
    let app = &app;
    // From 120 ms before its expiry to 100 ms after, 20 ms apart.
    let commits = ids
        .iter()
        .zip(&expiries)
        .enumerate()
        .map(|(i, (id, expires))| {
            let at = expires + (i as i64) * 20 - 120;
            async move {
                wait_until(at).await;
                let r = settle(app, &app.orders, id, "commit").await;
                let status = r.status().as_u16();
                (status, r.json::<Value>().await.unwrap())
            }
        });
    let answers = join_all(commits).await;

    let journal = app.movements(Some(product.as_str()), 100).await;
    let mut shipped = 0;
    for ((id, expires), (status, body)) in ids.iter().zip(&expiries).zip(&answers) {
        let (now, kind, actor) = match (*status, body["type"].as_str()) {
            (200, _) => {
                assert_eq!(body["status"], "committed", "{body}");
                shipped += 1;
                ("committed", "commit", "service:orders")
            }
            (409, Some("/problems/reservation-expired")) => ("expired", "expire", "service:orders"),
            (409, Some("/problems/reservation-settled")) => {
                assert_eq!(
                    body["detail"], "The reservation is already expired.",
                    "{body}"
                );
                ("expired", "expire", "sweeper")
            }
            other => panic!("the commit of {id} answered {other:?}: {body}"),
        };
        assert_eq!(status_of(app, id).await, now, "{id}");
        let settles: Vec<&Value> = journal
            .iter()
            .filter(|m| m["reservation_id"] == id.as_str() && m["kind"] != "reserve")
            .collect();
        assert_eq!(
            settles.len(),
            1,
            "{id} was settled {} times: {settles:?}",
            settles.len()
        );
        let m = settles[0];
        assert_eq!(
            (m["kind"].as_str(), m["actor"].as_str()),
            (Some(kind), Some(actor)),
            "{m}"
        );
        let on_hand = if kind == "commit" { -1 } else { 0 };
        assert_eq!(
            (m["delta_on_hand"].as_i64(), m["delta_reserved"].as_i64()),
            (Some(on_hand), Some(-1)),
            "{m}"
        );
        // A settle decides and journals at one reading of the clock: what
        // shipped shipped before the expiry, what expired expired after it.
        let at = millis(m["at"].as_str().unwrap());
        if kind == "commit" {
            assert!(
                at < *expires,
                "{id} shipped at {at}, expiring at {expires}: {m}"
            );
        } else {
            assert!(
                at >= *expires,
                "{id} expired at {at}, before {expires}: {m}"
            );
        }
    }
    let rows = app.assert_journal_replays(&product).await;
    assert_eq!(
        rows.values().copied().collect::<Vec<_>>(),
        [(20 - shipped, 0)]
    );
}
both!(
    commits_racing_the_sweeper_settle_each_reservation_once,
    crate::fixtures::expiring(1, 10)
);

/// `orders` with both the stock scopes accounts grants it (`stock:reserve`
/// and `stock:adjust`, which a restock needs).
fn orders_adjusting() -> String {
    crate::helpers::token(
        emporium_auth::TokenType::Service,
        vec![],
        Some("stock:reserve stock:adjust"),
        "orders",
    )
}

/// The movements of reservation `id` of kind `kind` in `product`'s journal.
async fn movements_of(app: &TestApp, product: &str, id: &str, kind: &str) -> Vec<Value> {
    app.movements(Some(product), 100)
        .await
        .into_iter()
        .filter(|m| m["reservation_id"] == id && m["kind"] == kind)
        .collect()
}

/// `POST /internal/v1/products/lookup` with `ids`, as the holder of `token`.
async fn lookup(app: &TestApp, token: &str, ids: Value) -> reqwest::Response {
    send(
        app.post("/internal/v1/products/lookup")
            .bearer_auth(token)
            .json(&json!({ "ids": ids })),
    )
    .await
}

async fn products_are_looked_up_in_one_call(app: TestApp) {
    let (cup, _) = app.stocked("LOOK-CUP", &[3, 2]).await;
    let (pot, _) = app.stocked("LOOK-POT", &[1]).await;
    let (gone, _) = app.stocked("LOOK-GONE", &[4]).await;
    let r = send(app.as_admin(reqwest::Method::DELETE, &format!("/api/v1/products/{gone}"))).await;
    assert_eq!(r.status(), 204);
    let held = json!([{"product_id": cup, "quantity": 2}]);
    assert_eq!(app.reserve(&new_id(), held).await.status(), 201);

    // Found ones in the order first asked for, each once; unknown and deleted
    // ones are missing.
    let unknown = new_id();
    let r = lookup(
        &app,
        &app.orders,
        json!([pot, unknown, cup, gone, pot, cup]),
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{v}");
    assert_eq!(items[0]["id"], pot.as_str(), "{v}");
    assert_eq!(items[0]["available"], 1, "{v}");
    assert_eq!(
        items[1],
        json!({"id": cup, "sku": "LOOK-CUP", "name": "Product LOOK-CUP",
               "price": {"amount": 1999, "currency": "EUR"}, "available": 3}),
        "what is reserved is not available"
    );
    assert_eq!(v["missing"], json!([unknown, gone]), "{v}");

    // Any client with the scope; nothing found is an answer too.
    let r = lookup(&app, &app.shipping, json!([unknown])).await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v, json!({"items": [], "missing": [unknown]}));

    // 1 to 100 ids (duplicates count).
    let hundred: Vec<String> = (0..100).map(|_| new_id()).collect();
    let r = lookup(&app, &app.orders, json!(hundred)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap()["missing"]
            .as_array()
            .unwrap()
            .len(),
        100
    );
    let mut many = hundred.clone();
    many.push(hundred[0].clone());
    for ids in [json!([]), json!(many)] {
        let body = problem(lookup(&app, &app.orders, ids).await, 422).await;
        assert_eq!(crate::helpers::fields(&body), ["ids"], "{body}");
    }
    let empty = app
        .post("/internal/v1/products/lookup")
        .bearer_auth(&app.orders)
        .json(&json!({}));
    refused(empty, 422).await;

    // Only services with `stock:reserve`.
    let other = crate::helpers::token(
        emporium_auth::TokenType::Service,
        vec![],
        Some("stock:adjust"),
        "restocker",
    );
    let request = app
        .post("/internal/v1/products/lookup")
        .json(&json!({"ids": [cup]}));
    let (customer, other) = (Some(app.customer.as_str()), Some(other.as_str()));
    refused_to(request, &[(None, 401), (customer, 401), (other, 403)]).await;
}
both!(products_are_looked_up_in_one_call);

/// A confirmed order's reservation is kept: the sweeper leaves it alone past
/// the checkout's time to live (60 s here) while it releases the others, and
/// it ships as any other. A keep moves no stock.
async fn a_kept_reservation_outlives_the_checkouts_time_to_live(app: TestApp) {
    let (product, _) = app.stocked("KEEP", &[5]).await;
    let (kept, lapsing) = (new_id(), new_id());
    for id in [&kept, &lapsing] {
        let one = json!([{"product_id": product, "quantity": 1}]);
        assert_eq!(app.reserve(id, one).await.status(), 201);
    }
    let taken = millis(
        reservation(&app, &kept).await["expires_at"]
            .as_str()
            .unwrap(),
    );
    let r = settle(&app, &app.orders, &kept, "keep").await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "active", "{v}");
    assert_eq!(v["lines"].as_array().unwrap().len(), 1, "{v}");
    let until = millis(v["expires_at"].as_str().unwrap());
    let thirty_days: i64 = 2_592_000_000;
    assert!(until >= taken - 60_000 + thirty_days, "{v}");

    // Kept again: a retry, answered alike.
    let r = settle(&app, &app.orders, &kept, "keep").await;
    assert_eq!(r.status(), 200);
    let again: Value = r.json().await.unwrap();
    assert_eq!(again["status"], "active");
    assert!(millis(again["expires_at"].as_str().unwrap()) >= until);
    assert_eq!(reservation(&app, &kept).await, again);
    assert_eq!(on_hand_and_reserved(&app, &product).await, (5, 2));

    app.clock.advance(Duration::from_secs(120));
    let deadline = Instant::now() + Duration::from_secs(20);
    while reservation(&app, &lapsing).await["status"] != "expired" {
        assert!(
            Instant::now() < deadline,
            "the other reservation never expired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(reservation(&app, &kept).await["status"], "active");
    assert_eq!(on_hand_and_reserved(&app, &product).await, (5, 1));

    // It ships; kept after that, or after a release → 409.
    let r = settle(&app, &app.orders, &kept, "commit").await;
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "committed");
    assert_eq!(on_hand_and_reserved(&app, &product).await, (4, 0));
    let r = settle(&app, &app.orders, &kept, "keep").await;
    let body = problem_of(r, 409, "reservation-settled").await;
    assert_eq!(body["detail"], "The reservation is already committed.");
    let released = new_id();
    let one = json!([{"product_id": product, "quantity": 1}]);
    assert_eq!(app.reserve(&released, one).await.status(), 201);
    // Another client's reservation cannot be kept: it does not exist for it.
    problem(settle(&app, &app.shipping, &released, "keep").await, 404).await;
    assert_eq!(
        settle(&app, &app.orders, &released, "release")
            .await
            .status(),
        200
    );
    let r = settle(&app, &app.orders, &released, "keep").await;
    let body = problem_of(r, 409, "reservation-settled").await;
    assert_eq!(body["detail"], "The reservation is already released.");
    assert_eq!(reservation(&app, &released).await["status"], "released");
    problem(settle(&app, &app.orders, &new_id(), "keep").await, 404).await;

    let journal = app.movements(Some(product.as_str()), 100).await;
    let kinds: Vec<&str> = journal
        .iter()
        .filter(|m| m["reservation_id"] == kept.as_str())
        .map(|m| m["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["reserve", "commit"], "a keep moves no stock");
    app.assert_journal_replays(&product).await;
}
both!(
    a_kept_reservation_outlives_the_checkouts_time_to_live,
    crate::fixtures::expiring(60, 50)
);

/// A keep that comes after the expiry (before the sweeper) expires the
/// reservation itself, as a commit does: its stock is back on sale.
async fn a_reservation_past_its_expiry_is_never_kept(app: TestApp) {
    let (product, _) = app.stocked("KEEP-LATE", &[4]).await;
    let id = new_id();
    let three = json!([{"product_id": product, "quantity": 3}]);
    assert_eq!(app.reserve(&id, three).await.status(), 201);
    app.clock.advance(Duration::from_secs(61));
    let keep = || settle(&app, &app.orders, &id, "keep");
    let body = problem_of(keep().await, 409, "reservation-expired").await;
    assert_eq!(
        body["detail"],
        "The reservation expired before it was kept; its stock was released."
    );
    assert_eq!(on_hand_and_reserved(&app, &product).await, (4, 0));
    assert_eq!(reservation(&app, &id).await["status"], "expired");
    problem_of(keep().await, 409, "reservation-settled").await;
    let expiries = movements_of(&app, &product, &id, "expire").await;
    assert_eq!(expiries.len(), 1, "{expiries:?}");
    assert_eq!(expiries[0]["actor"], "service:orders");
    assert_eq!(expiries[0]["reason"], "reservation expired");
    app.assert_journal_replays(&product).await;
}
both!(
    a_reservation_past_its_expiry_is_never_kept,
    crate::fixtures::expiring(60, 3600000)
);

/// A returned order: what shipped goes back on hand in the warehouses it
/// left, journaled per line, once however often it is asked.
async fn restocking_puts_shipped_goods_back_once(app: TestApp) {
    let adjusting = orders_adjusting();
    let (product, warehouses) = app.stocked("RESTOCK", &[3, 4]).await;
    let id = new_id();
    let six = json!([{"product_id": product, "quantity": 6}]);
    let r = app.reserve(&id, six).await;
    assert_eq!(r.status(), 201);
    let lines = lines_of(&r.json::<Value>().await.unwrap());
    assert_eq!(lines.len(), 2, "split over both warehouses: {lines:?}");

    // Nothing shipped yet: nothing to put back.
    let r = settle(&app, &adjusting, &id, "restock").await;
    problem_of(r, 409, "reservation-not-committed").await;
    // `stock:reserve` alone does not restock.
    refused(
        app.post(&format!("/internal/v1/reservations/{id}/restock"))
            .bearer_auth(&app.orders),
        403,
    )
    .await;
    assert_eq!(settle(&app, &app.orders, &id, "commit").await.status(), 200);
    let shipped = app.assert_journal_replays(&product).await;
    assert_eq!(shipped.values().map(|(o, _)| o).sum::<i64>(), 1);

    // Another client's reservation does not exist for it.
    let other = crate::helpers::token(
        emporium_auth::TokenType::Service,
        vec![],
        Some("stock:reserve stock:adjust"),
        "shipping",
    );
    problem(settle(&app, &other, &id, "restock").await, 404).await;

    let r = settle(&app, &adjusting, &id, "restock").await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "restocked", "{v}");
    assert_eq!(lines_of(&v), lines);
    let back: BTreeMap<String, (i64, i64)> = BTreeMap::from([
        (warehouses[0].clone(), (3, 0)),
        (warehouses[1].clone(), (4, 0)),
    ]);
    assert_eq!(app.assert_journal_replays(&product).await, back);
    assert_eq!(available(&app, &product).await, 7);

    let restocks = movements_of(&app, &product, &id, "restock").await;
    let mut moved: Vec<(String, String, i64)> = restocks
        .iter()
        .map(|m| {
            assert_eq!(m["delta_reserved"], 0, "{m}");
            assert_eq!(m["actor"], "service:orders", "{m}");
            assert_eq!(m["reason"], "returned", "{m}");
            (
                m["warehouse_id"].as_str().unwrap().to_owned(),
                m["product_id"].as_str().unwrap().to_owned(),
                m["delta_on_hand"].as_i64().unwrap(),
            )
        })
        .collect();
    moved.sort();
    assert_eq!(
        moved, lines,
        "one restock movement per line, its quantity back"
    );

    // Again: answered as it is, nothing moves.
    let r = settle(&app, &adjusting, &id, "restock").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "restocked");
    assert_eq!(app.assert_journal_replays(&product).await, back);
    assert_eq!(movements_of(&app, &product, &id, "restock").await.len(), 2);
    assert_eq!(reservation(&app, &id).await["status"], "restocked");
    // A restocked reservation is settled for every other step.
    for step in ["commit", "release", "keep"] {
        let r = settle(&app, &app.orders, &id, step).await;
        let body = problem_of(r, 409, "reservation-settled").await;
        assert_eq!(body["detail"], "The reservation is already restocked.");
    }

    // Released or expired: nothing left the warehouse either.
    let released = new_id();
    let one = json!([{"product_id": product, "quantity": 1}]);
    assert_eq!(app.reserve(&released, one).await.status(), 201);
    assert_eq!(
        settle(&app, &app.orders, &released, "release")
            .await
            .status(),
        200
    );
    let r = settle(&app, &adjusting, &released, "restock").await;
    let body = problem_of(r, 409, "reservation-not-committed").await;
    assert_eq!(
        body["detail"],
        "The reservation is released: nothing of it left a warehouse."
    );
    problem(settle(&app, &adjusting, &new_id(), "restock").await, 404).await;
    app.assert_journal_replays(&product).await;
}
both!(restocking_puts_shipped_goods_back_once);

/// Five restocks of one reservation at once: the stock moves once, and every
/// caller is told it is restocked.
async fn concurrent_restocks_move_stock_once(app: TestApp) {
    let adjusting = orders_adjusting();
    let (product, _) = app.stocked("RESTOCK-RACE", &[5]).await;
    let id = new_id();
    let three = json!([{"product_id": product, "quantity": 3}]);
    assert_eq!(app.reserve(&id, three).await.status(), 201);
    assert_eq!(settle(&app, &app.orders, &id, "commit").await.status(), 200);
    assert_eq!(on_hand_and_reserved(&app, &product).await, (2, 0));

    let answers = join_all((0..5).map(|_| settle(&app, &adjusting, &id, "restock"))).await;
    for r in answers {
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<Value>().await.unwrap()["status"], "restocked");
    }
    assert_eq!(on_hand_and_reserved(&app, &product).await, (5, 0));
    let restocks = movements_of(&app, &product, &id, "restock").await;
    assert_eq!(restocks.len(), 1, "{restocks:?}");
    assert_eq!(restocks[0]["delta_on_hand"], 3);
    app.assert_journal_replays(&product).await;
}
both!(concurrent_restocks_move_stock_once);
