//! The OpenAPI document served at `/openapi.json`.

use utoipa::OpenApi;

use super::{categories, lookup, products, reservations, search, stock};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Emporium catalog",
        description = "Categories, products, warehouses, stock and reservations."
    ),
    paths(
        categories::tree,
        categories::create,
        categories::update,
        categories::delete,
        search::list,
        products::get_one,
        products::create,
        products::update,
        products::delete,
        stock::warehouses,
        stock::create_warehouse,
        stock::of_product,
        stock::set,
        stock::adjust,
        stock::movements,
        reservations::reserve,
        reservations::get_one,
        reservations::release,
        reservations::commit,
        reservations::keep,
        reservations::restock,
        lookup::lookup,
    )
)]
pub struct ApiDoc;

pub fn json() -> String {
    ApiDoc::openapi()
        .to_json()
        .unwrap_or_else(|_| "{}".to_owned())
}
