//! `emporium orders rebuild-projections` on a real event store.

use std::process::Command;

use emporium_db::testing::TestDatabase;
use emporium_orders::domain::{Line, Order, OrderEvent, ShippingAddress, Totals};
use emporium_orders::store::{EventStore, MIGRATIONS};
use uuid::Uuid;

#[tokio::test]
async fn the_read_model_is_rebuilt_from_the_command_line() {
    let file = TestDatabase::sqlite();
    let parts = [MIGRATIONS, emporium_messaging::migrations::OUTBOX];
    let db = emporium_db::open_service_db(&file.url, 2, &parts)
        .await
        .unwrap();
    let store = EventStore::new(db.clone());
    let id = Uuid::now_v7();
    let lines = vec![Line::new(Uuid::now_v7(), "TEA-1", "Green tea", 450, 2).unwrap()];
    let placed = OrderEvent::Placed {
        customer_id: Uuid::now_v7(),
        totals: Totals::of(&lines, 0, "EUR").unwrap(),
        lines,
        shipping_address: ShippingAddress {
            name: "Ada".into(),
            line1: "1 Way".into(),
            city: "Paris".into(),
            postal_code: "75001".into(),
            country: "FR".into(),
            ..ShippingAddress::default()
        },
        payment_token: "tok_test".into(),
        request: String::new(),
    };
    let order = Order::start(id, &placed).unwrap();
    let projection = emporium_orders::view::projection(&order, (5, 5));
    store
        .append(id, 0, &[placed], &projection, (&[], 5))
        .await
        .unwrap();
    let before = store.projected(id).await.unwrap();
    db.sql().execute("DELETE FROM orders", ()).await.unwrap();
    assert!(store.projected(id).await.unwrap().is_none());

    let rebuilt = Command::new(env!("CARGO_BIN_EXE_emporium"))
        .args(["orders", "rebuild-projections"])
        .env("EMPORIUM_DATABASE_URL", &file.url)
        .output()
        .unwrap();
    assert!(
        rebuilt.status.success(),
        "{}",
        String::from_utf8_lossy(&rebuilt.stderr)
    );
    assert!(String::from_utf8_lossy(&rebuilt.stdout).contains("1 projections rebuilt"));
    assert_eq!(store.projected(id).await.unwrap(), before);
}
