//! Catalog's batched product lookup (`POST /internal/v1/products/lookup`), as
//! the services that sell call it (service tokens with `stock:reserve`): what
//! a checkout needs to know of the products in a cart, in one call.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// The lookup route.
pub const PRODUCTS_LOOKUP_PATH: &str = "/internal/v1/products/lookup";

/// At most this many ids in one lookup (duplicates count).
pub const MAX_LOOKUP_IDS: usize = 100;

/// `POST …/products/lookup`: 1 to [`MAX_LOOKUP_IDS`] product ids; an id sent
/// twice is answered once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LookupRequest {
    #[serde(default)]
    pub ids: Vec<Uuid>,
}

/// A price: minor units of an ISO 4217 currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Price {
    pub amount: i64,
    pub currency: String,
}

/// A live product as a checkout needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProductSummary {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub price: Price,
    /// What can be sold now: the sum over warehouses of `on_hand - reserved`.
    pub available: i64,
}

/// The answer: the live products found, in the order first asked for, and the
/// ids that name no product or a deleted one (in the order asked for).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LookupResponse {
    pub items: Vec<ProductSummary>,
    pub missing: Vec<Uuid>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_lookup_travels_as_documented() {
        let id = Uuid::from_u128(1);
        let request: LookupRequest =
            serde_json::from_str(&format!("{{\"ids\":[\"{id}\"]}}")).unwrap();
        assert_eq!(request.ids, [id]);
        assert!(
            serde_json::from_str::<LookupRequest>("{}")
                .unwrap()
                .ids
                .is_empty()
        );
        let answer = LookupResponse {
            items: vec![ProductSummary {
                id,
                sku: "CUP".into(),
                name: "Cup".into(),
                price: Price {
                    amount: 1999,
                    currency: "EUR".into(),
                },
                available: 3,
            }],
            missing: vec![Uuid::from_u128(2)],
        };
        let json = serde_json::to_value(&answer).unwrap();
        assert_eq!(json["items"][0]["price"]["amount"], 1999);
        assert_eq!(json["items"][0]["price"]["currency"], "EUR");
        assert_eq!(json["missing"][0], Uuid::from_u128(2).to_string());
        assert_eq!(
            serde_json::from_value::<LookupResponse>(json).unwrap(),
            answer
        );
    }
}
