//! The inbox: which events a consumer has already applied.

use uuid::Uuid;

/// Records that `consumer` handles `event_id`, inside the transaction that
/// applies the effect. `false` means it was handled before: skip the effect
/// and acknowledge.
pub async fn first_delivery<'c, DB>(
    tx: &mut sqlx::Transaction<'c, DB>,
    consumer: &str,
    event_id: Uuid,
) -> Result<bool, sqlx::Error>
where
    DB: sqlx::Database,
    for<'e> &'e mut DB::Connection: sqlx::Executor<'e, Database = DB>,
    for<'q> Uuid: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Decode<'q, DB> + sqlx::Type<DB>,
    for<'q> <DB as sqlx::Database>::Arguments: sqlx::IntoArguments<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    let inserted: Option<i64> = sqlx::query_scalar::<DB, i64>(
        "INSERT INTO inbox (consumer, event_id, handled_at) VALUES ($1, $2, $3) \
         ON CONFLICT (consumer, event_id) DO NOTHING RETURNING handled_at",
    )
    .bind(consumer)
    .bind(event_id)
    .bind(crate::now_ms())
    .fetch_optional(&mut **tx)
    .await?;
    Ok(inserted.is_some())
}
