//! The OpenAPI document served at `/openapi.json`.

use utoipa::OpenApi;

use super::{cart, orders};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Emporium orders",
        description = "Each customer's cart; orders placed through the checkout saga, their history, and their later transitions (cancel, ship, deliver, refund)."
    ),
    paths(
        cart::show,
        cart::set_item,
        cart::clear,
        orders::place,
        orders::list,
        orders::get_one,
        orders::history,
        orders::cancel,
        orders::ship,
        orders::deliver,
        orders::refund,
    )
)]
pub struct ApiDoc;

pub fn json() -> String {
    ApiDoc::openapi()
        .to_json()
        .unwrap_or_else(|_| "{}".to_owned())
}
