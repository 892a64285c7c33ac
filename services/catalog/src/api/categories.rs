//! The category tree.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use emporium_auth::Admin;
use emporium_http::{AppJson, AppPath, FieldError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::types::Json;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{ApiError, ApiResult, AppState};
use crate::domain::AttributeDef;
use crate::store::{CatalogStore, CategoryDelete, CategoryRecord, StoreError};

#[derive(Debug, Serialize, ToSchema)]
pub struct CategoryNode {
    pub id: Uuid,
    pub parent_id: Option<Uuid>,
    pub name: String,
    pub slug: String,
    pub position: i32,
    pub attributes: Vec<AttributeDef>,
    #[schema(no_recursion)]
    pub children: Vec<CategoryNode>,
}

fn defs_of(c: &CategoryRecord) -> Vec<AttributeDef> {
    serde_json::from_value(c.attributes.0.clone()).unwrap_or_default()
}

fn node(
    c: &CategoryRecord,
    children: &HashMap<Option<Uuid>, Vec<&CategoryRecord>>,
) -> CategoryNode {
    let mut kids: Vec<CategoryNode> = children
        .get(&Some(c.id))
        .map(|v| v.iter().map(|k| node(k, children)).collect())
        .unwrap_or_default();
    kids.sort_by(|a, b| a.position.cmp(&b.position).then(a.name.cmp(&b.name)));
    CategoryNode {
        id: c.id,
        parent_id: c.parent_id,
        name: c.name.clone(),
        slug: c.slug.clone(),
        position: c.position,
        attributes: defs_of(c),
        children: kids,
    }
}

/// The whole tree, roots first, children by position.
#[utoipa::path(get, path = "/api/v1/categories", responses((status = 200, body = [CategoryNode])))]
pub async fn tree(State(state): State<AppState>) -> ApiResult<AppJson<Vec<CategoryNode>>> {
    let all = state.0.store.categories().await?;
    let mut children: HashMap<Option<Uuid>, Vec<&CategoryRecord>> = HashMap::new();
    for c in &all {
        children.entry(c.parent_id).or_default().push(c);
    }
    let mut roots: Vec<CategoryNode> = children
        .get(&None)
        .map(|v| v.iter().map(|c| node(c, &children)).collect())
        .unwrap_or_default();
    roots.sort_by(|a, b| a.position.cmp(&b.position).then(a.name.cmp(&b.name)));
    Ok(AppJson(roots))
}

/// Every attribute definition a product in `category` must satisfy: its own
/// and its ancestors'.
pub async fn effective_defs(
    store: &dyn CatalogStore,
    category: &CategoryRecord,
) -> Result<Vec<AttributeDef>, StoreError> {
    let mut defs = Vec::new();
    for segment in category.path.split('/').filter(|s| !s.is_empty()) {
        let Ok(id) = Uuid::parse_str(segment) else {
            continue;
        };
        let c = if id == category.id {
            Some(category.clone())
        } else {
            store.category(id).await?
        };
        if let Some(c) = c {
            defs.extend(defs_of(&c));
        }
    }
    Ok(defs)
}

fn slugify(name: &str) -> String {
    let mut slug = String::new();
    for c in name.to_lowercase().chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    slug.trim_end_matches('-').to_owned()
}

fn check_name_slug_defs(name: &str, slug: &str, defs: &[AttributeDef]) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if !emporium_http::text::shows_something(name) || name.chars().count() > 100 {
        errors.push(FieldError::new("name", "must be 1 to 100 characters"));
    } else if let Err(why) = emporium_http::text::refuse_hidden(name) {
        errors.push(FieldError::new("name", why));
    }
    if slug.is_empty()
        || slug.len() > 100
        || !slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        errors.push(FieldError::new(
            "slug",
            "must be 1 to 100 of a-z, 0-9 and -",
        ));
    }
    for def in defs {
        if let Err(e) = def.validate() {
            errors.push(FieldError::new("attributes", e));
        }
    }
    let mut names: Vec<&str> = defs.iter().map(|d| d.name.as_str()).collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w[0] == w[1]) {
        errors.push(FieldError::new("attributes", "names must be unique"));
    }
    errors
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewCategory {
    #[serde(default)]
    pub name: String,
    pub slug: Option<String>,
    pub parent_id: Option<Uuid>,
    #[serde(default)]
    pub position: i32,
    #[serde(default)]
    pub attributes: Vec<AttributeDef>,
}

/// Adds a category (admins).
#[utoipa::path(post, path = "/api/v1/categories", request_body = NewCategory,
    responses((status = 201, body = CategoryNode), (status = 409), (status = 422)), security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    _admin: Admin,
    AppJson(body): AppJson<NewCategory>,
) -> ApiResult<(StatusCode, AppJson<CategoryNode>)> {
    let slug = body.slug.clone().unwrap_or_else(|| slugify(&body.name));
    let errors = check_name_slug_defs(&body.name, &slug, &body.attributes);
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    let id = Uuid::now_v7();
    let path = match body.parent_id {
        None => format!("/{id}/"),
        Some(parent) => {
            let parent = state
                .0
                .store
                .category(parent)
                .await?
                .ok_or_else(|| ApiError::field("parent_id", "is not a category"))?;
            // Depth is bounded so paths and attribute inheritance stay cheap.
            if parent.path.matches('/').count() > 8 {
                return Err(ApiError::field(
                    "parent_id",
                    "categories nest at most 8 deep",
                ));
            }
            format!("{}{id}/", parent.path)
        }
    };
    let now = state.0.clock.now_ms();
    let record = CategoryRecord {
        id,
        parent_id: body.parent_id,
        name: body.name.trim().to_owned(),
        slug,
        path,
        position: body.position,
        attributes: Json(serde_json::to_value(&body.attributes).unwrap_or(Value::Array(vec![]))),
        created_at: now,
        updated_at: now,
    };
    state
        .0
        .store
        .insert_category(&record)
        .await
        .map_err(slug_taken)?;
    Ok((StatusCode::CREATED, AppJson(node(&record, &HashMap::new()))))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CategoryChange {
    pub name: Option<String>,
    pub slug: Option<String>,
    pub position: Option<i32>,
    pub attributes: Option<Vec<AttributeDef>>,
}

impl CategoryChange {
    /// Whether the body names no field that can change (`{}`, or only unknown fields).
    fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.slug.is_none()
            && self.position.is_none()
            && self.attributes.is_none()
    }
}

/// Renames, reorders or redefines a category's attributes (admins). A body
/// with no known field answers 422.
#[utoipa::path(patch, path = "/api/v1/categories/{id}", request_body = CategoryChange,
    responses((status = 200, body = CategoryNode), (status = 404), (status = 409), (status = 422)), security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    _admin: Admin,
    AppPath(id): AppPath<Uuid>,
    AppJson(body): AppJson<CategoryChange>,
) -> ApiResult<AppJson<CategoryNode>> {
    let mut c = state
        .0
        .store
        .category(id)
        .await?
        .ok_or(ApiError::NotFound("category"))?;
    if body.is_empty() {
        return Err(ApiError::field(
            "body",
            "must hold at least one of name, slug, position, attributes",
        ));
    }
    if let Some(name) = body.name {
        c.name = name.trim().to_owned();
    }
    if let Some(slug) = body.slug {
        c.slug = slug;
    }
    if let Some(position) = body.position {
        c.position = position;
    }
    let defs = body.attributes.unwrap_or_else(|| defs_of(&c));
    let errors = check_name_slug_defs(&c.name, &c.slug, &defs);
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    c.attributes = Json(serde_json::to_value(&defs).unwrap_or(Value::Array(vec![])));
    c.updated_at = state.0.clock.now_ms();
    let found = state
        .0
        .store
        .update_category(&c)
        .await
        .map_err(slug_taken)?;
    if !found {
        return Err(ApiError::NotFound("category"));
    }
    Ok(AppJson(node(&c, &HashMap::new())))
}

/// Removes an empty category (admins): one with products or children answers 409.
#[utoipa::path(delete, path = "/api/v1/categories/{id}",
    responses((status = 204), (status = 404), (status = 409)), security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    _admin: Admin,
    AppPath(id): AppPath<Uuid>,
) -> ApiResult<StatusCode> {
    match state.0.store.delete_category(id).await? {
        CategoryDelete::Done => Ok(StatusCode::NO_CONTENT),
        CategoryDelete::NotFound => Err(ApiError::NotFound("category")),
        CategoryDelete::HasProducts => Err(ApiError::Conflict(
            "category-has-products",
            "The category still has products; move or delete them first.".into(),
        )),
        CategoryDelete::HasChildren => Err(ApiError::Conflict(
            "category-has-children",
            "The category still has sub-categories; delete them first.".into(),
        )),
    }
}

/// A unique slug refused: another category has it.
fn slug_taken(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict { .. } => {
            ApiError::Conflict("slug-taken", "A category with this slug exists.".into())
        }
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_lower_case_words() {
        assert_eq!(slugify("Garden & Outdoor "), "garden-outdoor");
        assert_eq!(slugify("Tea"), "tea");
    }
}
