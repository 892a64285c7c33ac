//! Token verifications per second: one EdDSA access token checked against a
//! warm key cache (signature, algorithm pin, issuer, audience, expiry, type).
//! Run with `cargo bench -p emporium-auth`.

use std::sync::Arc;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use emporium_auth::{Claims, JwksSource, Role, TokenType, Verifier, VerifierSettings};
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, JwkSet, OctetKeyPairParameters,
    OctetKeyPairType,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

struct StaticKeys(JwkSet);

#[async_trait::async_trait]
impl JwksSource for StaticKeys {
    async fn fetch(&self) -> Result<JwkSet, String> {
        Ok(self.0.clone())
    }
}

fn setup() -> (Verifier, String) {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("key generation");
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("key parses");
    let jwk = Jwk {
        common: CommonParameters {
            key_id: Some("bench".into()),
            ..Default::default()
        },
        algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
            key_type: OctetKeyPairType::OctetKeyPair,
            curve: EllipticCurve::Ed25519,
            x: URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
        }),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64;
    let claims = Claims {
        iss: "emporium-accounts".into(),
        aud: "emporium".into(),
        sub: "01900000-0000-7000-8000-000000000000".into(),
        exp: now + 900,
        nbf: now,
        iat: now,
        jti: "01900000-0000-7000-8000-000000000001".into(),
        token_type: TokenType::Access,
        roles: vec![Role::Customer],
        sid: Some("01900000-0000-7000-8000-000000000002".into()),
        scope: None,
    };
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some("bench".into());
    let token = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ed_der(pkcs8.as_ref()))
        .expect("signing");
    let verifier = Verifier::new(
        VerifierSettings::new("emporium-accounts", "emporium"),
        Arc::new(StaticKeys(JwkSet { keys: vec![jwk] })),
    );
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(verifier.refresh_keys())
        .expect("keys load");
    (verifier, token)
}

fn verify(c: &mut Criterion) {
    let (verifier, token) = setup();
    let mut group = c.benchmark_group("access_token");
    group.throughput(Throughput::Elements(1));
    group.bench_function("verify_cached", |b| {
        b.iter(|| {
            verifier
                .verify_cached(std::hint::black_box(&token), TokenType::Access)
                .expect("valid")
        })
    });
    group.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);
