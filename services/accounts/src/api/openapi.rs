//! The OpenAPI document served at `/openapi.json`.

use utoipa::OpenApi;

use super::{auth, users, views};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Emporium accounts",
        description = "Users, sign-in, tokens and keys."
    ),
    paths(
        auth::register,
        auth::login,
        auth::refresh,
        auth::logout,
        auth::service_token,
        auth::jwks,
        users::me,
        users::update_me,
        users::change_password,
        users::close_me,
        users::list,
        users::get_one,
        users::admin_update,
    ),
    components(schemas(views::UserView, views::TokenPair, views::ServiceToken))
)]
pub struct ApiDoc;

pub fn json() -> String {
    ApiDoc::openapi()
        .to_json()
        .unwrap_or_else(|_| "{}".to_owned())
}
