//! Releases reservations whose time ran out, so stock held for an order that
//! never completed goes back on sale. Safe with several replicas: each release
//! re-checks the reservation under its row lock, so a race releases it once.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use emporium_db::{Clock, SharedClock};

use crate::store::{Actor, CatalogStore, MovementKind, SettleOutcome};

/// Releases every expired reservation now; returns how many this call released.
pub async fn sweep_once(store: &dyn CatalogStore, clock: &dyn Clock) -> anyhow::Result<usize> {
    let actor = Actor {
        who: "sweeper".into(),
        reason: "reservation expired".into(),
    };
    let mut released = 0;
    loop {
        let expired = store.expired_reservations(clock.now_ms(), 100).await?;
        if expired.is_empty() {
            return Ok(released);
        }
        let batch = expired.len();
        for id in expired {
            if store.release(id, MovementKind::Expire, &actor).await? == SettleOutcome::Done {
                released += 1;
                metrics::counter!("stock_reservations_expired_total").increment(1);
                tracing::info!(reservation_id = %id, "Reservation expired and released.");
            }
        }
        if batch < 100 {
            return Ok(released);
        }
    }
}

pub async fn run(
    store: Arc<dyn CatalogStore>,
    clock: SharedClock,
    every: Duration,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        if let Err(e) = sweep_once(store.as_ref(), clock.as_ref()).await {
            tracing::warn!(error = %e, "Sweeping expired reservations failed.");
        }
        tokio::select! {
            () = &mut stop => break,
            () = tokio::time::sleep(every) => {}
        }
    }
}
