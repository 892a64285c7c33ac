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
        const SQL: &str = "SELECT kid, private_der, public_x, created_at FROM signing_keys \
            ORDER BY created_at DESC, kid DESC";
        Ok(self.db.sql().fetch_all(SQL, ()).await?)
    }

    async fn insert_signing_key(&self, key: &SigningKeyRecord) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO signing_keys (kid, private_der, public_x, created_at) \
            VALUES ($1, $2, $3, $4)";
        let values = (&key.kid, &key.private_der, &key.public_x, key.created_at);
        self.db.sql().execute(SQL, values).await?;
        Ok(())
    }

    async fn replace_key_material(&self, keys: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().await?;
        for (kid, material) in keys {
            const SQL: &str = "UPDATE signing_keys SET private_der = $2 WHERE kid = $1";
            tx.sql().execute(SQL, (kid, material)).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn upsert_client(&self, c: &ClientRecord, now: i64) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO service_clients (client_id, secret_hash, scopes, \
            created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (client_id) DO UPDATE \
            SET secret_hash = EXCLUDED.secret_hash, scopes = EXCLUDED.scopes";
        let values = (&c.client_id, &c.secret_hash, &c.scopes, now);
        self.db.sql().execute(SQL, values).await?;
        Ok(())
    }

    async fn client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError> {
        const SQL: &str =
            "SELECT client_id, secret_hash, scopes FROM service_clients WHERE client_id = $1";
        Ok(self.db.sql().fetch_optional(SQL, (client_id,)).await?)
    }
}
