//! The OpenAPI document served at `/openapi.json`.

use utoipa::OpenApi;

use super::{internal, public, webhooks};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Emporium payments",
        description = "Card tokens, payments by order, refunds, the ledger's verification, the provider's webhooks, and the internal API for orders."
    ),
    paths(
        public::tokenize,
        public::by_order,
        public::refund,
        public::verify,
        webhooks::receive,
        internal::authorize,
        internal::get_one,
        internal::capture,
        internal::void,
        internal::refund,
    )
)]
pub struct ApiDoc;

pub fn json() -> String {
    ApiDoc::openapi()
        .to_json()
        .unwrap_or_else(|_| "{}".to_owned())
}
