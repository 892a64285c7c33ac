//! The batched product lookup, for the services that sell (service tokens
//! with `stock:reserve`): what a checkout needs of every product in a cart,
//! in one call and one query.

use std::collections::{HashMap, HashSet};

use axum::extract::State;
use emporium_auth::ServiceCaller;
use emporium_contracts::products::{
    LookupRequest, LookupResponse, MAX_LOOKUP_IDS, Price, ProductSummary,
};
use emporium_http::AppJson;
use uuid::Uuid;

use super::reservations::StockReserve;
use super::{ApiError, ApiResult, AppState};
use crate::store::ProductRecord;

fn summary(p: ProductRecord) -> ProductSummary {
    ProductSummary {
        id: p.id,
        sku: p.sku,
        name: p.name,
        price: Price {
            amount: p.price_amount,
            currency: p.price_currency,
        },
        available: p.available,
    }
}

/// The live products among `ids` (1 to 100; an id sent twice is answered
/// once), in the order first asked for, and the ids that name no product or a
/// deleted one.
#[utoipa::path(post, path = "/internal/v1/products/lookup", request_body = LookupRequest,
    responses((status = 200, body = LookupResponse), (status = 422, description = "no ids, or more than 100")),
    security(("bearer" = [])))]
pub async fn lookup(
    State(state): State<AppState>,
    _caller: ServiceCaller<StockReserve>,
    AppJson(body): AppJson<LookupRequest>,
) -> ApiResult<AppJson<LookupResponse>> {
    if body.ids.is_empty() || body.ids.len() > MAX_LOOKUP_IDS {
        return Err(ApiError::field(
            "ids",
            format!("must hold 1 to {MAX_LOOKUP_IDS} ids"),
        ));
    }
    let mut seen = HashSet::new();
    let ids: Vec<Uuid> = body.ids.into_iter().filter(|id| seen.insert(*id)).collect();
    let mut found: HashMap<Uuid, ProductRecord> = state
        .0
        .store
        .live_products(&ids)
        .await?
        .into_iter()
        .map(|p| (p.id, p))
        .collect();
    let mut items = Vec::with_capacity(found.len());
    let mut missing = Vec::new();
    for id in ids {
        match found.remove(&id) {
            Some(p) => items.push(summary(p)),
            None => missing.push(id),
        }
    }
    Ok(AppJson(LookupResponse { items, missing }))
}
