//! Local token verification against a cached JWKS.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::claims::{Claims, TokenType};

/// Where the public keys come from: the accounts JWKS over HTTPS for every other
/// service, the key table itself inside accounts.
#[async_trait::async_trait]
pub trait JwksSource: Send + Sync {
    async fn fetch(&self) -> Result<JwkSet, String>;
}

/// The JWKS document at a URL, fetched with a pooled client.
pub struct HttpJwks {
    pub client: reqwest::Client,
    pub url: String,
}

/// A key set larger than this is refused unread.
const MAX_JWKS_BYTES: usize = 64 * 1024;

#[async_trait::async_trait]
impl JwksSource for HttpJwks {
    async fn fetch(&self) -> Result<JwkSet, String> {
        let mut response = self
            .client
            .get(&self.url)
            .send()
            .await
            .map_err(|e| format!("JWKS request failed: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("JWKS answered {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("JWKS response broke off: {e}"))?
        {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(format!("JWKS is larger than {MAX_JWKS_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice::<JwkSet>(&body).map_err(|e| format!("JWKS is not a key set: {e}"))
    }
}

#[derive(Debug, Clone)]
pub struct VerifierSettings {
    pub issuer: String,
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
    /// An unknown `kid` refetches the key set at most this often, so a flood of
    /// forged tokens cannot turn into a flood of JWKS requests.
    pub refetch_floor: Duration,
}

impl VerifierSettings {
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            leeway: Duration::from_secs(30),
            refetch_floor: Duration::from_secs(10),
        }
    }
}

/// Why a token was refused. Every variant answers 401; the text goes to logs only.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token is not signed with EdDSA")]
    WrongAlgorithm,
    #[error("the token names no key")]
    MissingKid,
    #[error("the token's key is unknown")]
    UnknownKid,
    #[error("the token is invalid: {0}")]
    Invalid(String),
    #[error("the token is of the wrong type")]
    WrongType,
    #[error("the signing keys could not be fetched")]
    KeysUnavailable,
    #[error("the token's user or session was revoked")]
    Revoked,
}

struct KeyCache {
    keys: HashMap<String, Arc<DecodingKey>>,
    /// The last attempt to fetch, successful or not: every attempt counts
    /// against the floor, so a failing source is not asked again at once.
    attempted_at: Option<Instant>,
    /// Failed attempts in a row; each doubles the wait before the next.
    failures: u32,
}

/// Verifies tokens. Build one per process part and share it (`Arc`).
pub struct Verifier {
    settings: VerifierSettings,
    validation: Validation,
    source: Arc<dyn JwksSource>,
    cache: RwLock<KeyCache>,
    refetch: tokio::sync::Mutex<()>,
    /// Subjects and sessions revoked before their tokens expire.
    pub revocations: crate::Revocations,
}

impl Verifier {
    pub fn new(settings: VerifierSettings, source: Arc<dyn JwksSource>) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[settings.issuer.as_str()]);
        validation.set_audience(&[settings.audience.as_str()]);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = settings.leeway.as_secs();
        // Access and service tokens live 15 minutes; the leeway comes on top.
        let hold = Duration::from_secs(16 * 60) + settings.leeway;
        Self {
            settings,
            validation,
            source,
            cache: RwLock::new(KeyCache {
                keys: HashMap::new(),
                attempted_at: None,
                failures: 0,
            }),
            refetch: tokio::sync::Mutex::new(()),
            revocations: crate::Revocations::new(hold),
        }
    }

    /// Verifies a token of the expected type, fetching the key set if its key is new.
    pub async fn verify(&self, token: &str, expected: TokenType) -> Result<Claims, VerifyError> {
        match self.verify_cached(token, expected) {
            Err(VerifyError::UnknownKid) => {
                self.refresh_keys().await?;
                self.verify_cached(token, expected)
            }
            other => other,
        }
    }

    /// Verifies with the keys already cached; never does I/O.
    pub fn verify_cached(&self, token: &str, expected: TokenType) -> Result<Claims, VerifyError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Malformed)?;
        // Pin the algorithm before anything else: `none`, HS256 with the public
        // key as secret and every other family are refused here.
        if header.alg != Algorithm::EdDSA {
            return Err(VerifyError::WrongAlgorithm);
        }
        let kid = header.kid.ok_or(VerifyError::MissingKid)?;
        let key = self
            .cache
            .read()
            .map_err(|_| VerifyError::KeysUnavailable)?
            .keys
            .get(&kid)
            .cloned()
            .ok_or(VerifyError::UnknownKid)?;
        let data = jsonwebtoken::decode::<Claims>(token, &key, &self.validation)
            .map_err(|e| VerifyError::Invalid(e.to_string()))?;
        if data.claims.token_type != expected {
            return Err(VerifyError::WrongType);
        }
        let claims = data.claims;
        if self
            .revocations
            .is_revoked(&claims.sub, claims.sid.as_deref(), claims.generation)
        {
            return Err(VerifyError::Revoked);
        }
        Ok(claims)
    }

    /// Refetches the key set unless an attempt was made within the floor
    /// (doubled after each failure in a row, up to five minutes).
    pub async fn refresh_keys(&self) -> Result<(), VerifyError> {
        let _one_at_a_time = self.refetch.lock().await;
        {
            let mut cache = self
                .cache
                .write()
                .map_err(|_| VerifyError::KeysUnavailable)?;
            let wait = self
                .settings
                .refetch_floor
                .saturating_mul(1 << cache.failures.min(8))
                .min(Duration::from_secs(300).max(self.settings.refetch_floor));
            if cache.attempted_at.is_some_and(|at| at.elapsed() < wait) {
                return if cache.failures > 0 && cache.keys.is_empty() {
                    Err(VerifyError::KeysUnavailable)
                } else {
                    Ok(())
                };
            }
            cache.attempted_at = Some(Instant::now());
        }
        let set = match self.source.fetch().await {
            Ok(set) => set,
            Err(e) => {
                tracing::warn!(error = %e, "Fetching the signing keys failed.");
                if let Ok(mut cache) = self.cache.write() {
                    cache.failures = cache.failures.saturating_add(1);
                }
                return Err(VerifyError::KeysUnavailable);
            }
        };
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            // Only Ed25519 keys with an id are usable; anything else in the set is ignored.
            let (Some(kid), AlgorithmParameters::OctetKeyPair(_)) =
                (&jwk.common.key_id, &jwk.algorithm)
            else {
                continue;
            };
            if let Ok(key) = DecodingKey::from_jwk(jwk) {
                keys.insert(kid.clone(), Arc::new(key));
            }
        }
        let mut cache = self
            .cache
            .write()
            .map_err(|_| VerifyError::KeysUnavailable)?;
        tracing::debug!(keys = keys.len(), "Signing keys refreshed.");
        cache.keys = keys;
        cache.failures = 0;
        Ok(())
    }

    pub fn settings(&self) -> &VerifierSettings {
        &self.settings
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{MemoryJwks, TestKey, claims};

    fn token(key: &TestKey) -> String {
        key.sign(&claims("iss", "aud", "s", TokenType::Access, vec![], None))
    }

    #[tokio::test]
    async fn unknown_kids_refetch_but_no_more_often_than_the_floor() {
        let a = TestKey::generate("a");
        let b = TestKey::generate("b");
        let source = MemoryJwks::with(&[&a]);
        let mut settings = VerifierSettings::new("iss", "aud");
        settings.refetch_floor = Duration::from_millis(300);
        let verifier = Verifier::new(settings, source.clone());

        verifier
            .verify(&token(&a), TokenType::Access)
            .await
            .unwrap();
        verifier
            .verify(&token(&a), TokenType::Access)
            .await
            .unwrap();
        assert_eq!(source.fetch_count(), 1, "known keys are cached");

        // A rotation: key b appears; within the floor nobody refetches.
        source.keys.lock().unwrap().push(b.jwk.clone());
        for _ in 0..20 {
            let e = verifier.verify(&token(&b), TokenType::Access).await;
            assert_eq!(e.unwrap_err(), VerifyError::UnknownKid);
        }
        assert_eq!(source.fetch_count(), 1, "the floor holds");
        tokio::time::sleep(Duration::from_millis(350)).await;
        verifier
            .verify(&token(&b), TokenType::Access)
            .await
            .unwrap();
        assert_eq!(source.fetch_count(), 2);
        assert_eq!(
            verifier
                .verify(&token(&a), TokenType::Service)
                .await
                .unwrap_err(),
            VerifyError::WrongType
        );
    }

    /// A key source that is down: counts its attempts and always fails.
    struct Down(std::sync::atomic::AtomicUsize);

    #[async_trait::async_trait]
    impl JwksSource for Down {
        async fn fetch(&self) -> Result<JwkSet, String> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Err("connection refused".into())
        }
    }

    #[tokio::test]
    async fn failed_fetches_count_against_the_floor_and_back_off() {
        let source = Arc::new(Down(Default::default()));
        let mut settings = VerifierSettings::new("iss", "aud");
        settings.refetch_floor = Duration::from_millis(200);
        let verifier = Verifier::new(settings, source.clone());
        let forged = token(&TestKey::generate("random"));
        // A flood of tokens with unknown kids while the source is down: one attempt.
        for _ in 0..50 {
            let e = verifier.verify(&forged, TokenType::Access).await;
            assert_eq!(e.unwrap_err(), VerifyError::KeysUnavailable);
        }
        assert_eq!(source.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        // After one failure the wait is doubled: 250 ms is not enough...
        tokio::time::sleep(Duration::from_millis(250)).await;
        let _ = verifier.verify(&forged, TokenType::Access).await;
        assert_eq!(source.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        // ...but 400 ms is; then the wait doubles again.
        tokio::time::sleep(Duration::from_millis(250)).await;
        let _ = verifier.verify(&forged, TokenType::Access).await;
        assert_eq!(source.0.load(std::sync::atomic::Ordering::SeqCst), 2);
        tokio::time::sleep(Duration::from_millis(400)).await;
        let _ = verifier.verify(&forged, TokenType::Access).await;
        assert_eq!(
            source.0.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "800 ms now"
        );
    }

    #[tokio::test]
    async fn revoked_subjects_and_sessions_are_refused() {
        let key = TestKey::generate("a");
        let verifier = Verifier::new(
            VerifierSettings::new("iss", "aud"),
            MemoryJwks::with(&[&key]),
        );
        let mut c = claims("iss", "aud", "user-1", TokenType::Access, vec![], None);
        c.sid = Some("session-1".into());
        let t = key.sign(&c);
        verifier.verify(&t, TokenType::Access).await.unwrap();
        verifier.revocations.revoke_session("session-1", c.iat);
        assert_eq!(
            verifier.verify(&t, TokenType::Access).await.unwrap_err(),
            VerifyError::Revoked
        );
        let other = key.sign(&claims(
            "iss",
            "aud",
            "user-2",
            TokenType::Access,
            vec![],
            None,
        ));
        verifier.verify(&other, TokenType::Access).await.unwrap();
        verifier.revocations.revoke_subject("user-2", 1, c.iat);
        assert_eq!(
            verifier
                .verify(&other, TokenType::Access)
                .await
                .unwrap_err(),
            VerifyError::Revoked
        );
    }
}

/// How a service checks tokens (`[auth]` in its settings): where accounts
/// publishes its keys, the CA that signs accounts' certificate (empty: the
/// system's roots), and the issuer and audience tokens must name.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct AuthSettings {
    pub jwks_url: String,
    pub ca_cert: String,
    pub issuer: String,
    pub audience: String,
}

impl AuthSettings {
    /// The accounts JWKS over pooled HTTPS.
    pub fn jwks(&self) -> anyhow::Result<Arc<HttpJwks>> {
        let ca = (!self.ca_cert.is_empty()).then(|| std::path::PathBuf::from(&self.ca_cert));
        let client = emporium_http::tls::client(ca.as_deref(), Duration::from_secs(10))?;
        Ok(Arc::new(HttpJwks {
            client,
            url: self.jwks_url.clone(),
        }))
    }

    /// A verifier of this issuer's and audience's tokens against `jwks`.
    pub fn verifier(&self, jwks: Arc<dyn JwksSource>) -> Arc<Verifier> {
        Arc::new(Verifier::new(
            VerifierSettings::new(&self.issuer, &self.audience),
            jwks,
        ))
    }
}
