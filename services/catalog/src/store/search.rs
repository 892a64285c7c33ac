//! Building the product search query for either engine: the filters are the
//! same SQL; full-text matching, ranking and attribute matching differ.

use serde_json::Value;
use sqlx::QueryBuilder;
use sqlx::types::Json;

use super::{ProductQuery, Sort};

/// What differs between the engines' search SQL.
pub trait SearchDialect: sqlx::Database {
    /// Joined after `products p JOIN categories c` when there is a text query.
    const FTS_JOIN: &'static str;
    fn push_text_match(qb: &mut QueryBuilder<Self>, text: &str);
    fn push_rank_order(qb: &mut QueryBuilder<Self>, text: &str);
    /// `name` is validated (a-z, 0-9, _) before it gets here.
    fn push_attribute(qb: &mut QueryBuilder<Self>, name: &str, typed: Value, text: String);
}

impl SearchDialect for sqlx::Postgres {
    const FTS_JOIN: &'static str = "";
    fn push_text_match(qb: &mut QueryBuilder<Self>, text: &str) {
        qb.push(" AND p.search @@ websearch_to_tsquery('english', ")
            .push_bind(text.to_owned())
            .push(")");
    }
    fn push_rank_order(qb: &mut QueryBuilder<Self>, text: &str) {
        qb.push(" ORDER BY ts_rank(p.search, websearch_to_tsquery('english', ")
            .push_bind(text.to_owned())
            .push(")) DESC, p.id DESC");
    }
    fn push_attribute(qb: &mut QueryBuilder<Self>, name: &str, typed: Value, text: String) {
        let mut doc = serde_json::Map::new();
        doc.insert(name.to_owned(), typed);
        qb.push(" AND (p.attributes @> ")
            .push_bind(Json(Value::Object(doc)))
            .push(format!(" OR p.attributes ->> '{name}' = "))
            .push_bind(text)
            .push(")");
    }
}

impl SearchDialect for sqlx::Sqlite {
    const FTS_JOIN: &'static str = " JOIN products_fts f ON f.rowid = p.rowid";
    fn push_text_match(qb: &mut QueryBuilder<Self>, text: &str) {
        qb.push(" AND products_fts MATCH ")
            .push_bind(fts5_query(text));
    }
    fn push_rank_order(qb: &mut QueryBuilder<Self>, _text: &str) {
        // bm25 is lower for better matches; a match in the name counts ten times.
        qb.push(" ORDER BY bm25(products_fts, 10.0, 1.0), p.id DESC");
    }
    fn push_attribute(qb: &mut QueryBuilder<Self>, name: &str, typed: Value, text: String) {
        let mut doc = serde_json::Map::new();
        doc.insert(name.to_owned(), typed);
        qb.push(format!(
            " AND (json_extract(p.attributes, '$.{name}') = json_extract("
        ))
        .push_bind(Value::Object(doc).to_string())
        .push(format!(
            ", '$.{name}') OR json_extract(p.attributes, '$.{name}') = "
        ))
        .push_bind(text)
        .push(")");
    }
}

/// Every word quoted, so operators and punctuation in what people type are
/// searched for, never interpreted; the words must all match.
pub fn fts5_query(text: &str) -> String {
    text.split_whitespace()
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// [`build`] for the engine `pool` is on.
pub fn build_for<DB>(
    _pool: &sqlx::Pool<DB>,
    select: &str,
    q: &ProductQuery,
    page: bool,
) -> QueryBuilder<DB>
where
    DB: SearchDialect,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    build(select, q, page)
}

/// The query for one page (`page`), or for the attributes of every match (facets).
pub fn build<DB>(select: &str, q: &ProductQuery, page: bool) -> QueryBuilder<DB>
where
    DB: SearchDialect,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let mut qb = QueryBuilder::<DB>::new(select);
    qb.push(" JOIN categories c ON c.id = p.category_id");
    if q.text.is_some() {
        qb.push(DB::FTS_JOIN);
    }
    qb.push(" WHERE p.deleted_at IS NULL");
    if let Some(text) = &q.text {
        DB::push_text_match(&mut qb, text);
    }
    if let Some(path) = &q.category_path {
        qb.push(" AND c.path LIKE ").push_bind(format!("{path}%"));
    }
    if let Some(min) = q.min_price {
        qb.push(" AND p.price_amount >= ").push_bind(min);
    }
    if let Some(max) = q.max_price {
        qb.push(" AND p.price_amount <= ").push_bind(max);
    }
    if q.in_stock {
        qb.push(" AND EXISTS (SELECT 1 FROM stock s WHERE s.product_id = p.id AND s.on_hand > s.reserved)");
    }
    for (name, typed, text) in &q.attributes {
        DB::push_attribute(&mut qb, name, typed.clone(), text.clone());
    }
    if !page {
        qb.push(" LIMIT 10000");
        return qb;
    }
    match (q.sort, &q.text) {
        (Sort::Relevance, Some(text)) => DB::push_rank_order(&mut qb, text),
        (Sort::Price, _) => {
            qb.push(" ORDER BY p.price_amount ASC, p.id DESC");
        }
        (Sort::PriceDesc, _) => {
            qb.push(" ORDER BY p.price_amount DESC, p.id DESC");
        }
        _ => {
            qb.push(" ORDER BY p.id DESC");
        }
    }
    qb.push(" LIMIT ").push_bind(q.limit);
    qb.push(" OFFSET ").push_bind(q.offset);
    qb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fts5_queries_are_quoted_words() {
        assert_eq!(fts5_query("green  tea"), "\"green\" \"tea\"");
        assert_eq!(fts5_query("a\"b OR c*"), "\"a\"\"b\" \"OR\" \"c*\"");
    }
}
