//! Catalog's reservation API (`/internal/v1/reservations`), as the services
//! that sell call it: the request and response bodies and the problem types
//! a caller must tell apart.
//!
//! A reservation's id is the order's id, so a retried reserve finds the same
//! reservation; reserve, keep, release, commit and restock are all idempotent.
//!
//! A reservation's life: `active` (held until `expires_at`; a keep moves that
//! far out once the order is confirmed) → `committed` (shipped) → maybe
//! `restocked` (the goods came back); or `released` / `expired` (the stock
//! went back on sale without shipping).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// The path of the collection; one reservation is `{RESERVATIONS_PATH}/{id}`.
pub const RESERVATIONS_PATH: &str = "/internal/v1/reservations";

/// At most this many items in one reservation.
pub const MAX_ITEMS: usize = 100;
/// The most of one product one reservation may hold.
pub const MAX_QUANTITY: i64 = 10_000;

/// One product and how many of it to hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReserveItem {
    pub product_id: Uuid,
    pub quantity: i64,
}

/// Reserve every item or nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReserveRequest {
    /// The reservation id: the order's id, so a retry finds the same reservation.
    pub id: Uuid,
    #[serde(default)]
    pub items: Vec<ReserveItem>,
}

/// Where a reservation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReservationStatus {
    /// Holding stock until `expires_at`.
    Active,
    /// Given back by the caller (the order was rejected or cancelled).
    Released,
    /// Given back by the sweeper: it was not committed in time.
    Expired,
    /// The goods left the warehouse (the order shipped).
    Committed,
    /// The goods that left came back on hand, where they left from (a
    /// refunded order's return): committed before.
    Restocked,
}

impl ReservationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Released => "released",
            Self::Expired => "expired",
            Self::Committed => "committed",
            Self::Restocked => "restocked",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "active" => Self::Active,
            "released" => Self::Released,
            "expired" => Self::Expired,
            "committed" => Self::Committed,
            "restocked" => Self::Restocked,
            _ => return None,
        })
    }
}

impl std::fmt::Display for ReservationStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The stock one warehouse holds for a reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReservationLine {
    pub warehouse_id: Uuid,
    pub product_id: Uuid,
    pub quantity: i64,
}

/// A reservation as the catalog returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Reservation {
    pub id: Uuid,
    pub status: ReservationStatus,
    pub lines: Vec<ReservationLine>,
    /// RFC 3339, UTC.
    pub expires_at: String,
}

/// The problem types (last path segment of `type`) the reservation routes answer
/// with, beside the generic ones.
pub mod problems {
    /// 409: not enough stock of one or more products; nothing was reserved.
    pub const OUT_OF_STOCK: &str = "out-of-stock";
    /// 409: the id was already used for other items.
    pub const MISMATCH: &str = "reservation-mismatch";
    /// 409: another client holds a reservation with this id.
    pub const ID_TAKEN: &str = "reservation-id-taken";
    /// 409: the reservation expired before it was committed (or kept); its
    /// stock was released.
    pub const EXPIRED: &str = "reservation-expired";
    /// 409: the reservation was already settled the other way (or, for a
    /// keep, is no longer active).
    pub const SETTLED: &str = "reservation-settled";
    /// 409: a restock of a reservation that never shipped (active, released
    /// or expired): there is nothing to put back.
    pub const NOT_COMMITTED: &str = "reservation-not-committed";
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn statuses_are_lower_case_words_in_text_and_json() {
        for status in [
            ReservationStatus::Active,
            ReservationStatus::Released,
            ReservationStatus::Expired,
            ReservationStatus::Committed,
            ReservationStatus::Restocked,
        ] {
            assert_eq!(ReservationStatus::parse(status.as_str()), Some(status));
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
            assert_eq!(
                serde_json::from_str::<ReservationStatus>(&json).unwrap(),
                status
            );
        }
        assert_eq!(ReservationStatus::parse("Active"), None);
        assert!(serde_json::from_str::<ReservationStatus>("\"Active\"").is_err());
    }
}
