//! Signing keys, access and service tokens, refresh tokens and client secrets.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SecureRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use emporium_auth::{Claims, JwksSource, Role, TokenType};
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm,
    OctetKeyPairParameters, OctetKeyPairType, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use uuid::Uuid;

use crate::kek::{self, Kek, KekRing};
use crate::store::{AccountsStore, SigningKeyRecord, StoreError};

/// Random bytes from the system generator, base64url without padding.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut buf)
        .expect("the system random generator works");
    URL_SAFE_NO_PAD.encode(buf)
}

/// What is stored for a refresh token or a client secret: SHA-256, hex. The
/// inputs are 256 random bits, so a fast hash is enough (no dictionary to try).
pub fn secret_hash(secret: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Constant-time comparison of two stored hashes.
pub fn hashes_match(a: &str, b: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

/// Creates a new signing key, wraps it under `kek` and stores it; returns its kid.
pub async fn insert_wrapped(
    store: &dyn AccountsStore,
    kek: &Kek,
    now_ms: i64,
) -> Result<String, StoreError> {
    let mut key = new_signing_key(now_ms);
    key.private_der = kek.wrap(&key.kid, &key.private_der);
    store.insert_signing_key(&key).await?;
    Ok(key.kid)
}

/// Creates a new Ed25519 signing key record (the private key in the clear).
pub fn new_signing_key(now_ms: i64) -> SigningKeyRecord {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("Ed25519 key generation works");
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("a fresh key parses");
    SigningKeyRecord {
        kid: Uuid::now_v7().simple().to_string(),
        private_der: pkcs8.as_ref().to_vec(),
        public_x: URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
        created_at: now_ms,
    }
}

struct LoadedKey {
    kid: String,
    encoding: EncodingKey,
    public_x: String,
    created_at: i64,
}

struct Loaded {
    at: Instant,
    /// Newest first; the first signs.
    keys: Vec<LoadedKey>,
}

/// The signing keys, loaded from the store and re-read every little while so a
/// rotation made by `emporium accounts rotate-key` reaches every replica.
pub struct KeyRing {
    store: Arc<dyn AccountsStore>,
    /// Unwraps the stored private keys (and wraps new ones).
    keks: Arc<KekRing>,
    loaded: RwLock<Option<Arc<Loaded>>>,
    reload_every: Duration,
    /// A retired key stays published this long after its successor appeared,
    /// so tokens it signed stay verifiable until they expire.
    publish_after_retired_ms: i64,
}

impl KeyRing {
    pub fn new(
        store: Arc<dyn AccountsStore>,
        keks: Arc<KekRing>,
        access_ttl: Duration,
        reload_every: Duration,
    ) -> Self {
        Self {
            store,
            keks,
            loaded: RwLock::new(None),
            reload_every,
            publish_after_retired_ms: (access_ttl.as_millis() as i64) + 60_000,
        }
    }

    /// Makes sure one key exists (first start), and that every stored key is
    /// wrapped under the current KEK's family (keys stored in the clear by an
    /// older version are wrapped now).
    pub async fn ensure_key(&self, now_ms: i64) -> anyhow::Result<()> {
        let records = self.store.signing_keys().await?;
        if records.is_empty() {
            insert_wrapped(self.store.as_ref(), &self.keks.current, now_ms).await?;
            tracing::info!("Signing key created.");
        }
        let clear: Vec<(String, Vec<u8>)> = records
            .iter()
            .filter(|r| !kek::is_wrapped(&r.private_der))
            .map(|r| {
                (
                    r.kid.clone(),
                    self.keks.current.wrap(&r.kid, &r.private_der),
                )
            })
            .collect();
        if !clear.is_empty() {
            self.store.replace_key_material(&clear).await?;
            tracing::info!(
                keys = clear.len(),
                "Signing keys stored in the clear were wrapped."
            );
        }
        self.reload().await
    }

    async fn reload(&self) -> anyhow::Result<()> {
        let records = self.store.signing_keys().await?;
        let mut keys = Vec::with_capacity(records.len());
        for r in records {
            let der = self.keks.unwrap_key(&r.kid, &r.private_der)?;
            keys.push(LoadedKey {
                encoding: EncodingKey::from_ed_der(&der),
                kid: r.kid,
                public_x: r.public_x,
                created_at: r.created_at,
            });
        }
        let loaded = Arc::new(Loaded {
            at: Instant::now(),
            keys,
        });
        if let Ok(mut slot) = self.loaded.write() {
            *slot = Some(loaded);
        }
        Ok(())
    }

    async fn current(&self) -> anyhow::Result<Arc<Loaded>> {
        let fresh = self
            .loaded
            .read()
            .ok()
            .and_then(|l| l.clone())
            .filter(|l| l.at.elapsed() < self.reload_every);
        if let Some(loaded) = fresh {
            return Ok(loaded);
        }
        if let Err(e) = self.reload().await {
            // Keep signing with the keys already held (a KEK rotation in
            // progress, the database briefly away); only a first load must work.
            let held = self.loaded.read().ok().and_then(|l| l.clone());
            match held {
                Some(loaded) => {
                    tracing::warn!(error = %format!("{e:#}"), "Reloading the signing keys failed; keeping those held.");
                    return Ok(loaded);
                }
                None => return Err(e),
            }
        }
        self.loaded
            .read()
            .ok()
            .and_then(|l| l.clone())
            .ok_or_else(|| anyhow::anyhow!("no signing keys are loaded"))
    }

    /// Signs claims with the newest key.
    pub async fn sign(&self, claims: &Claims) -> anyhow::Result<String> {
        let loaded = self.current().await?;
        let key = loaded
            .keys
            .first()
            .ok_or_else(|| anyhow::anyhow!("no signing key exists"))?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.kid.clone());
        header.typ = Some(match claims.token_type {
            TokenType::Access => "at+jwt".to_owned(),
            TokenType::Service => "JWT".to_owned(),
        });
        Ok(jsonwebtoken::encode(&header, claims, &key.encoding)?)
    }

    /// The published keys: the newest, and each older one until tokens it
    /// signed have expired.
    pub async fn jwks(&self, now_ms: i64) -> anyhow::Result<JwkSet> {
        let loaded = self.current().await?;
        let mut keys = Vec::new();
        let mut successor_created: Option<i64> = None;
        for key in &loaded.keys {
            let published =
                successor_created.is_none_or(|succ| now_ms < succ + self.publish_after_retired_ms);
            if published {
                keys.push(Jwk {
                    common: CommonParameters {
                        public_key_use: Some(PublicKeyUse::Signature),
                        key_algorithm: Some(KeyAlgorithm::EdDSA),
                        key_id: Some(key.kid.clone()),
                        ..Default::default()
                    },
                    algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                        key_type: OctetKeyPairType::OctetKeyPair,
                        curve: EllipticCurve::Ed25519,
                        x: key.public_x.clone(),
                    }),
                });
            }
            successor_created = Some(key.created_at);
        }
        Ok(JwkSet { keys })
    }
}

/// The accounts service verifies its own tokens against its own key table.
pub struct LocalJwks(pub Arc<KeyRing>);

#[async_trait::async_trait]
impl JwksSource for LocalJwks {
    async fn fetch(&self) -> Result<JwkSet, String> {
        self.0
            .jwks(chrono::Utc::now().timestamp_millis())
            .await
            .map_err(|e| e.to_string())
    }
}

/// Token lifetimes and names.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    pub issuer: String,
    pub audience: String,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub service_ttl: Duration,
}

impl TokenSettings {
    pub fn access_claims(
        &self,
        user: Uuid,
        roles: Vec<Role>,
        family: Uuid,
        generation: i64,
        now_s: i64,
    ) -> Claims {
        Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: user.to_string(),
            exp: now_s + self.access_ttl.as_secs() as i64,
            nbf: now_s,
            iat: now_s,
            jti: Uuid::now_v7().to_string(),
            token_type: TokenType::Access,
            roles,
            sid: Some(family.to_string()),
            generation: Some(generation),
            scope: None,
        }
    }

    pub fn service_claims(&self, client_id: &str, scope: String, now_s: i64) -> Claims {
        Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: client_id.to_owned(),
            exp: now_s + self.service_ttl.as_secs() as i64,
            nbf: now_s,
            iat: now_s,
            jti: Uuid::now_v7().to_string(),
            token_type: TokenType::Service,
            roles: Vec::new(),
            sid: None,
            generation: None,
            scope: Some(scope),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_tokens_are_long_and_distinct() {
        let a = random_token(32);
        assert_eq!(a.len(), 43);
        assert_ne!(a, random_token(32));
    }

    #[test]
    fn hashes_are_stable_and_compared_exactly() {
        let h = secret_hash("abc");
        assert_eq!(
            h,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(hashes_match(&h, &secret_hash("abc")));
        assert!(!hashes_match(&h, &secret_hash("abd")));
    }
}
