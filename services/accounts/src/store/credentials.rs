//! Token-signing keys and service clients.

use super::sql::SqlStore;
use super::*;

#[async_trait::async_trait]
pub trait CredentialStore: Send + Sync {
    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError>;

    async fn insert_signing_key(&self, key: &SigningKeyRecord) -> Result<(), StoreError>;

    /// Replaces the stored (wrapped) private keys of these kids, all in one transaction.
    async fn replace_key_material(&self, keys: &[(String, Vec<u8>)]) -> Result<(), StoreError>;

    async fn upsert_client(&self, client: &ClientRecord, now: i64) -> Result<(), StoreError>;

    async fn client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError>;
}

#[async_trait::async_trait]
impl CredentialStore for SqlStore {
    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        emporium_db::on_db!(&self.db, |pool| {
            Ok(sqlx::query_as::<_, SigningKeyRecord>(
                "SELECT kid, private_der, public_x, created_at FROM signing_keys \
                 ORDER BY created_at DESC, kid DESC",
            )
            .fetch_all(pool)
            .await?)
        })
    }

    async fn insert_signing_key(&self, key: &SigningKeyRecord) -> Result<(), StoreError> {
        emporium_db::on_db!(&self.db, |pool| {
            sqlx::query(
                "INSERT INTO signing_keys (kid, private_der, public_x, created_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(&key.kid)
            .bind(&key.private_der)
            .bind(&key.public_x)
            .bind(key.created_at)
            .execute(pool)
            .await
            .map_err(StoreError::from)?;
            Ok(())
        })
    }

    async fn replace_key_material(&self, keys: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().await?;
        for (kid, material) in keys {
            emporium_db::on_tx!(&mut tx, |conn| {
                sqlx::query("UPDATE signing_keys SET private_der = $2 WHERE kid = $1")
                    .bind(kid)
                    .bind(material)
                    .execute(conn)
                    .await
                    .map(drop)
            })?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn upsert_client(&self, c: &ClientRecord, now: i64) -> Result<(), StoreError> {
        emporium_db::on_db!(&self.db, |pool| {
            sqlx::query(
                "INSERT INTO service_clients (client_id, secret_hash, scopes, created_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (client_id) DO UPDATE \
                 SET secret_hash = EXCLUDED.secret_hash, scopes = EXCLUDED.scopes",
            )
            .bind(&c.client_id)
            .bind(&c.secret_hash)
            .bind(&c.scopes)
            .bind(now)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    async fn client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError> {
        const SQL: &str =
            "SELECT client_id, secret_hash, scopes FROM service_clients WHERE client_id = $1";
        Ok(self.db.row_by(SQL, client_id).await?)
    }
}
