//! The rules of the catalog, free of I/O: money, attribute definitions and
//! how a product's attributes are checked against them, and how a reservation
//! is split across warehouses.

pub mod allocation;
pub mod attributes;
pub mod money;

pub use allocation::{Allocation, allocate};
pub use attributes::{AttributeDef, AttributeKind, validate_attributes};
pub use money::Money;
