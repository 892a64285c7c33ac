//! Keys and tokens for tests and benchmarks: a real Ed25519 key pair whose
//! public half is served as a JWKS from memory, and a signer for claims.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, JwkSet, OctetKeyPairParameters,
    OctetKeyPairType,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

use crate::claims::{Claims, Role, TokenType};
use crate::verifier::JwksSource;

/// One signing key with its id.
pub struct TestKey {
    pub kid: String,
    pub jwk: Jwk,
    pub encoding: EncodingKey,
}

impl TestKey {
    pub fn generate(kid: &str) -> Self {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("Ed25519 key generation");
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("a fresh key parses");
        let jwk = Jwk {
            common: CommonParameters {
                key_id: Some(kid.to_owned()),
                ..Default::default()
            },
            algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                key_type: OctetKeyPairType::OctetKeyPair,
                curve: EllipticCurve::Ed25519,
                x: URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
            }),
        };
        Self {
            kid: kid.to_owned(),
            jwk,
            encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
        }
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("signing works")
    }

    /// A user's access token as accounts issues it (issuer
    /// `emporium-accounts`, audience `emporium`): a customer, and an admin
    /// too when `admin`.
    pub fn user_token(&self, user: uuid::Uuid, admin: bool) -> String {
        let roles = if admin {
            vec![Role::Customer, Role::Admin]
        } else {
            vec![Role::Customer]
        };
        let sub = user.to_string();
        self.sign(&claims(
            SHOP_ISSUER,
            SHOP_AUDIENCE,
            &sub,
            TokenType::Access,
            roles,
            None,
        ))
    }

    /// A service client's token as accounts issues it, holding `scope`
    /// (space-separated scopes).
    pub fn service_token(&self, client: &str, scope: &str) -> String {
        self.sign(&claims(
            SHOP_ISSUER,
            SHOP_AUDIENCE,
            client,
            TokenType::Service,
            vec![],
            Some(scope),
        ))
    }
}

/// The issuer and audience of the shop's tokens (accounts' defaults).
const SHOP_ISSUER: &str = "emporium-accounts";
const SHOP_AUDIENCE: &str = "emporium";

/// A key set held in memory that counts how often it is fetched.
#[derive(Default)]
pub struct MemoryJwks {
    pub keys: std::sync::Mutex<Vec<Jwk>>,
    pub fetches: AtomicUsize,
}

impl MemoryJwks {
    pub fn with(keys: &[&TestKey]) -> Arc<Self> {
        let set = Self::default();
        *set.keys.lock().expect("keys lock") = keys.iter().map(|k| k.jwk.clone()).collect();
        Arc::new(set)
    }

    pub fn fetch_count(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl JwksSource for MemoryJwks {
    async fn fetch(&self) -> Result<JwkSet, String> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        Ok(JwkSet {
            keys: self.keys.lock().map_err(|e| e.to_string())?.clone(),
        })
    }
}

/// Claims valid for the next ten minutes.
pub fn claims(
    issuer: &str,
    audience: &str,
    sub: &str,
    token_type: TokenType,
    roles: Vec<Role>,
    scope: Option<&str>,
) -> Claims {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs() as i64;
    Claims {
        iss: issuer.to_owned(),
        aud: audience.to_owned(),
        sub: sub.to_owned(),
        exp: now + 600,
        nbf: now,
        iat: now,
        jti: uuid::Uuid::now_v7().to_string(),
        token_type,
        roles,
        sid: None,
        generation: None,
        scope: scope.map(str::to_owned),
    }
}
