//! Persistence of the catalog: one trait, a PostgreSQL and a SQLite
//! implementation sharing their SQL (see `sql.rs`).
//!
//! Stock changes happen only inside transactions that lock the stock rows
//! they touch (PostgreSQL: `SELECT … FOR UPDATE` in product-then-warehouse
//! order, so concurrent reservations cannot deadlock; SQLite: `BEGIN IMMEDIATE`),
//! check `on_hand >= reserved >= 0` (also a table constraint), and write a
//! journal row for every change in the same transaction.

use std::collections::BTreeMap;

use emporium_contracts::reservations::ReservationStatus;
use emporium_messaging::outbox::Outbox;
use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

mod categories;
mod products;
mod reservations;
mod search;
mod sql;
mod stock;

pub use sql::{connect, connect_at};

/// How a product list is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    /// Best match first (with a text query; otherwise newest).
    Relevance,
    Price,
    PriceDesc,
    #[default]
    Newest,
}

/// A product search: every filter is optional.
#[derive(Debug, Clone, Default)]
pub struct ProductQuery {
    pub text: Option<String>,
    /// The category's path: it and its sub-categories match.
    pub category_path: Option<String>,
    pub min_price: Option<i64>,
    pub max_price: Option<i64>,
    pub in_stock: bool,
    /// (name, value as JSON, value as text): either form matches.
    pub attributes: Vec<(String, Value, String)>,
    pub sort: Sort,
    pub offset: i64,
    pub limit: i64,
}

emporium_db::record! {
    #[derive(Debug, Clone)]
    pub struct CategoryRecord {
        pub id: Uuid,
        pub parent_id: Option<Uuid>,
        pub name: String,
        pub slug: String,
        pub path: String,
        pub position: i32,
        pub attributes: Json<Value>,
        pub created_at: i64,
        pub updated_at: i64,
    }
}

emporium_db::record! {
    #[derive(Debug, Clone)]
    pub struct ProductRecord {
        pub id: Uuid,
        pub sku: String,
        pub name: String,
        pub description: String,
        pub price_amount: i64,
        pub price_currency: String,
        pub category_id: Uuid,
        pub attributes: Json<Value>,
        pub images: Json<Value>,
        pub low_stock_below: i64,
        pub version: i64,
        pub created_at: i64,
        pub updated_at: i64,
        /// Sum over warehouses of `on_hand - reserved`.
        pub available: i64,
    }
}

/// Fields of a product as written (create, or the full state after a patch).
#[derive(Debug, Clone)]
pub struct ProductWrite {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub description: String,
    pub price_amount: i64,
    pub price_currency: String,
    pub category_id: Uuid,
    pub attributes: Value,
    pub images: Value,
    pub low_stock_below: i64,
}

emporium_db::record! {
    #[derive(Debug, Clone)]
    pub struct WarehouseRecord {
        pub id: Uuid,
        pub code: String,
        pub name: String,
        pub address: Json<Value>,
        pub created_at: i64,
    }
}

emporium_db::record! {
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct StockRecord {
        pub warehouse_id: Uuid,
        pub product_id: Uuid,
        pub on_hand: i64,
        pub reserved: i64,
    }
}

emporium_db::record! {
    #[derive(Debug, Clone)]
    pub struct MovementRecord {
        pub seq: i64,
        pub product_id: Uuid,
        pub warehouse_id: Uuid,
        pub kind: String,
        pub delta_on_hand: i64,
        pub delta_reserved: i64,
        pub on_hand_after: i64,
        pub reserved_after: i64,
        pub reason: String,
        pub actor: String,
        pub reservation_id: Option<Uuid>,
        pub at: i64,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationLine {
    pub warehouse_id: Uuid,
    pub product_id: Uuid,
    pub quantity: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub id: Uuid,
    /// The service client that made it (its token's `sub`); only it may see,
    /// release or commit it.
    pub client_id: String,
    pub status: ReservationStatus,
    pub items: BTreeMap<Uuid, i64>,
    pub lines: Vec<ReservationLine>,
    pub expires_at: i64,
}

/// A reservation asked for: `client` (its token's `sub`) holds `items`
/// (product → quantity) until `expires_at`, under the id it chose.
#[derive(Debug, Clone)]
pub struct ReservationRequest<'a> {
    pub id: Uuid,
    pub client: &'a str,
    pub items: &'a BTreeMap<Uuid, i64>,
    pub expires_at: i64,
}

/// Which stock row: a product in a warehouse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StockRow {
    pub warehouse: Uuid,
    pub product: Uuid,
}

/// What an admin does to a stock row's `on_hand`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StockLevel {
    /// Counted: set it to this.
    Set(i64),
    /// Adjusted: add this (negative takes away).
    Adjust(i64),
}

/// Who changed stock, and why (for the journal).
#[derive(Debug, Clone)]
pub struct Actor {
    pub who: String,
    pub reason: String,
}

#[derive(Debug)]
pub enum ReserveOutcome {
    Created(Reservation),
    /// The same id with the same items: the reservation made before.
    Existing(Reservation),
    /// The same id with other items.
    Mismatch,
    /// The id is another client's reservation.
    Taken,
    /// Not enough free stock of these products across all warehouses.
    OutOfStock(Vec<Uuid>),
    UnknownProducts(Vec<Uuid>),
}

#[derive(Debug, PartialEq, Eq)]
pub enum SettleOutcome {
    Done,
    NotFound,
    /// A commit came after `expires_at`: the reservation was expired instead
    /// (its stock released, as the sweeper would), and nothing shipped.
    ExpiredNow,
    /// The reservation is already released, expired, committed or restocked.
    AlreadySettled(ReservationStatus),
}

/// What a restock of a reservation did.
#[derive(Debug, PartialEq, Eq)]
pub enum RestockOutcome {
    /// Every line's quantity is back on hand where it left from.
    Done,
    NotFound,
    /// Restocked before: nothing moved again.
    AlreadyRestocked,
    /// It never shipped (active, released or expired): nothing to put back.
    NotCommitted(ReservationStatus),
}

/// The most a warehouse holds of one product: a set or an adjustment never
/// goes above it, so stock arithmetic stays far from overflow.
pub const MAX_ON_HAND: i64 = 1_000_000_000;

#[derive(Debug)]
pub enum StockChange {
    Done(StockRecord),
    NotFound,
    /// The change would take `on_hand` below what is reserved (or below zero).
    BelowReserved {
        reserved: i64,
    },
    /// The adjustment would take `on_hand` above [`MAX_ON_HAND`] (or overflow).
    OutOfRange,
}

#[derive(Debug)]
pub enum ProductUpdate {
    Done(Box<ProductRecord>),
    NotFound,
    StaleVersion { current: i64 },
}

#[derive(Debug, PartialEq, Eq)]
pub enum CategoryDelete {
    Done,
    NotFound,
    HasProducts,
    HasChildren,
}

/// Why a stock row moved: the `kind` of a journal entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MovementKind {
    /// Held for a reservation.
    Reserve,
    /// Given back by the reservation's owner.
    Release,
    /// Given back because the reservation ran out of time.
    Expire,
    /// Shipped: left the warehouse.
    Commit,
    /// Counted and set by an admin.
    Set,
    /// Adjusted by an admin.
    Adjust,
    /// Shipped goods back on hand (a committed reservation restocked).
    Restock,
}

impl MovementKind {
    /// The word stored in the journal and shown by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reserve => "reserve",
            Self::Release => "release",
            Self::Expire => "expire",
            Self::Commit => "commit",
            Self::Set => "set",
            Self::Adjust => "adjust",
            Self::Restock => "restock",
        }
    }
}

pub use categories::CategoryStore;
pub use emporium_db::StoreError;
pub use products::ProductStore;
pub use reservations::ReservationStore;
pub use stock::StockStore;

#[async_trait::async_trait]
pub trait CatalogStore:
    CategoryStore + ProductStore + StockStore + ReservationStore + Send + Sync
{
    async fn ping(&self) -> Result<(), StoreError>;
    fn outbox(&self) -> Outbox;
}
