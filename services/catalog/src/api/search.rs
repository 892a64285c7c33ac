//! Product search: full-text, filters, sorting, offset paging inside an
//! opaque cursor, and facet counts.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use axum::extract::State;
use emporium_http::{AppJson, AppQuery, FieldError};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{ApiError, ApiResult, AppState};
use crate::domain::AttributeDef;
use crate::store::{ProductQuery, Sort};
use emporium_http::paging::{self, Offset};

use super::products::ProductView;

/// A page of products with facet counts: for every filterable attribute, how
/// many of all the matching products have each value.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProductPage {
    pub items: Vec<ProductView>,
    pub next_cursor: Option<String>,
    /// Counted only when asked for (`facets=true`); otherwise always empty.
    pub facets: BTreeMap<String, BTreeMap<String, u64>>,
}

/// How deep offset paging may go.
const MAX_OFFSET: i64 = 10_000;

/// The longest search text (`q`), in characters.
const MAX_QUERY_CHARS: usize = 200;

/// How many `attr.<name>=` filters one search may hold: each adds to the SQL
/// expression, and SQLite refuses trees that are too large.
const MAX_ATTRIBUTE_FILTERS: usize = 20;

/// The longest attribute filter value, in characters.
const MAX_FILTER_VALUE_CHARS: usize = 200;

fn price_param(
    query: &HashMap<String, String>,
    key: &str,
    errors: &mut Vec<FieldError>,
) -> Option<i64> {
    let raw = query.get(key)?;
    match raw.parse::<i64>() {
        Ok(n) if n >= 0 => Some(n),
        _ => {
            errors.push(FieldError::new(
                key,
                "must be a whole number of minor units, 0 or more",
            ));
            None
        }
    }
}

/// `true`/`false` (or absent: false).
fn flag_param(query: &HashMap<String, String>, key: &str, errors: &mut Vec<FieldError>) -> bool {
    match query.get(key).map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            errors.push(FieldError::new(key, "must be true or false"));
            false
        }
    }
}

/// Search text and filter values reach the SQL engines as text: a NUL or
/// other control character must not (SQLite's FTS and PostgreSQL refuse NUL).
fn has_control(text: &str) -> bool {
    text.chars().any(char::is_control)
}

/// `attr.colour=red` → ("colour", "red" typed as JSON where it reads as one, "red").
fn attribute_filter(name: &str, raw: &str) -> Option<(String, Value, String)> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !valid {
        return None;
    }
    let typed = match raw {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => raw
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(|n| {
                if raw.contains('.') {
                    Value::Number(n)
                } else {
                    raw.parse::<i64>()
                        .map(Value::from)
                        .unwrap_or(Value::Number(n))
                }
            })
            .unwrap_or_else(|| Value::String(raw.to_owned())),
    };
    Some((name.to_owned(), typed, raw.to_owned()))
}

/// Products: full-text search ranked by relevance (`q`, at most 200 characters,
/// no control characters), filters (`category` with its sub-categories,
/// `min_price`, `max_price`, `in_stock`, up to 20 `attr.<name>=<value>` on
/// filterable attributes), `sort` (`relevance`, `price`, `-price`, `newest`),
/// paging by `cursor` and `limit`, and facet counts with `facets=true`.
#[utoipa::path(get, path = "/api/v1/products",
    params(("q" = Option<String>, Query), ("category" = Option<Uuid>, Query), ("min_price" = Option<i64>, Query),
           ("max_price" = Option<i64>, Query), ("in_stock" = Option<bool>, Query), ("sort" = Option<String>, Query),
           ("cursor" = Option<String>, Query), ("limit" = Option<i64>, Query), ("facets" = Option<bool>, Query)),
    responses((status = 200, body = ProductPage), (status = 404, description = "unknown category"), (status = 422)))]
pub async fn list(
    State(state): State<AppState>,
    AppQuery(pairs): AppQuery<Vec<(String, String)>>,
) -> ApiResult<AppJson<ProductPage>> {
    let mut errors: Vec<FieldError> = Vec::new();
    // Each parameter once: with "the last one wins", a first value nobody
    // checked could slip past whatever reads the first.
    let mut query = HashMap::new();
    for (key, value) in pairs {
        if query.insert(key.clone(), value).is_some() && !errors.iter().any(|e| e.field == key) {
            errors.push(FieldError::new(key, "must be given once"));
        }
    }
    let mut q = ProductQuery {
        text: query
            .get("q")
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty()),
        ..ProductQuery::default()
    };
    if query.get("q").is_some_and(|t| has_control(t)) {
        errors.push(FieldError::new("q", "must not contain control characters"));
    } else if q
        .text
        .as_ref()
        .is_some_and(|t| t.chars().count() > MAX_QUERY_CHARS)
    {
        errors.push(FieldError::new("q", "must be at most 200 characters"));
    }
    q.min_price = price_param(&query, "min_price", &mut errors);
    q.max_price = price_param(&query, "max_price", &mut errors);
    q.in_stock = flag_param(&query, "in_stock", &mut errors);
    let with_facets = flag_param(&query, "facets", &mut errors);
    q.sort = match query.get("sort").map(String::as_str) {
        None if q.text.is_some() => Sort::Relevance,
        None | Some("newest") => Sort::Newest,
        Some("relevance") => Sort::Relevance,
        Some("price") => Sort::Price,
        Some("-price") => Sort::PriceDesc,
        Some(_) => {
            errors.push(FieldError::new(
                "sort",
                "must be relevance, price, -price or newest",
            ));
            Sort::Newest
        }
    };
    let filters: Vec<(&str, &String)> = query
        .iter()
        .filter_map(|(key, value)| key.strip_prefix("attr.").map(|name| (name, value)))
        .collect();
    if filters.len() > MAX_ATTRIBUTE_FILTERS {
        errors.push(FieldError::new(
            "attr",
            format!("at most {MAX_ATTRIBUTE_FILTERS} attribute filters"),
        ));
    } else {
        for (name, value) in filters {
            let field = format!("attr.{name}");
            if has_control(value) || value.chars().count() > MAX_FILTER_VALUE_CHARS {
                errors.push(FieldError::new(
                    field,
                    "must be at most 200 characters, without control characters",
                ));
                continue;
            }
            match attribute_filter(name, value) {
                Some(filter) => q.attributes.push(filter),
                None => errors.push(FieldError::new(field, "is not an attribute name")),
            }
        }
    }
    q.attributes.sort_by(|a, b| a.0.cmp(&b.0));
    q.limit = paging::limit(query.get("limit").map(String::as_str))?;
    q.offset = match paging::decode_cursor::<Offset>(query.get("cursor").map(String::as_str))? {
        None => 0,
        Some(Offset(n)) if n <= MAX_OFFSET => n,
        Some(_) => return Err(ApiError::field("cursor", "is not a cursor")),
    };
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    // Categories are read only when filters or facets need their definitions.
    let filterable = if with_facets || !q.attributes.is_empty() {
        filterable_attributes(&state).await?
    } else {
        BTreeSet::new()
    };
    let unknown: Vec<FieldError> = q
        .attributes
        .iter()
        .filter(|(name, _, _)| !filterable.contains(name))
        .map(|(name, _, _)| {
            FieldError::new(
                format!("attr.{name}"),
                "is not a filterable attribute of any category",
            )
        })
        .collect();
    if !unknown.is_empty() {
        return Err(ApiError::Invalid(unknown));
    }
    if let Some(raw) = query.get("category") {
        let id = Uuid::parse_str(raw)
            .map_err(|_| ApiError::field("category", "must be a category id"))?;
        let category = state
            .0
            .store
            .category(id)
            .await?
            .ok_or(ApiError::NotFound("category"))?;
        q.category_path = Some(category.path);
    }

    // Nothing past MAX_OFFSET rows is served, whatever page size leads there.
    q.limit = q.limit.min(MAX_OFFSET - q.offset);
    let mut page = q.clone();
    page.limit = q.limit + 1;
    let mut rows = if q.limit == 0 {
        Vec::new()
    } else {
        state.0.store.search(&page).await?
    };
    let next_cursor = if rows.len() as i64 > q.limit && q.offset + q.limit < MAX_OFFSET {
        rows.truncate(q.limit as usize);
        Some(paging::encode_cursor(&Offset(q.offset + q.limit)))
    } else {
        rows.truncate(q.limit as usize);
        None
    };
    let facets = if with_facets {
        facets(&state, &q, &filterable).await?
    } else {
        BTreeMap::new()
    };
    Ok(AppJson(ProductPage {
        items: rows.iter().map(ProductView::from).collect(),
        next_cursor,
        facets,
    }))
}

/// The names of the attributes some category declares filterable.
async fn filterable_attributes(state: &AppState) -> ApiResult<BTreeSet<String>> {
    Ok(state
        .0
        .store
        .categories()
        .await?
        .iter()
        .flat_map(|c| {
            serde_json::from_value::<Vec<AttributeDef>>(c.attributes.0.clone()).unwrap_or_default()
        })
        .filter(|d| d.filterable)
        .map(|d| d.name)
        .collect())
}

/// Counts, over every match, the values of each filterable attribute.
async fn facets(
    state: &AppState,
    q: &ProductQuery,
    filterable: &BTreeSet<String>,
) -> ApiResult<BTreeMap<String, BTreeMap<String, u64>>> {
    let mut facets: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    if filterable.is_empty() {
        return Ok(facets);
    }
    for attributes in state.0.store.search_attributes(q).await? {
        let Value::Object(map) = attributes else {
            continue;
        };
        for (name, value) in map {
            if !filterable.contains(&name) {
                continue;
            }
            let label = match value {
                Value::String(s) => s,
                Value::Null => continue,
                other => other.to_string(),
            };
            *facets.entry(name).or_default().entry(label).or_default() += 1;
        }
    }
    Ok(facets)
}
