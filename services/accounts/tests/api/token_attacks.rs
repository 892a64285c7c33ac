//! Every forged, stale or misused token answers 401.

#![allow(clippy::unwrap_used)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use emporium_accounts::kek::{Kek, KekRing};
use emporium_accounts::tokens::new_signing_key;
use emporium_auth::{Claims, Role, TokenType};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::helpers::{TestApp, access, jwt_claims, problem, refresh};
use emporium_testkit::both;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Claims for the user `(id, session id)`: a real session, so that only
/// what the forgery changes can make it fail.
fn claims_for(user: &(String, String)) -> Claims {
    let now = now();
    Claims {
        iss: "emporium-accounts".into(),
        aud: "emporium".into(),
        sub: user.0.clone(),
        exp: now + 600,
        nbf: now,
        iat: now,
        jti: "forged".into(),
        token_type: TokenType::Access,
        roles: vec![Role::Customer, Role::Admin],
        sid: Some(user.1.clone()),
        generation: Some(0),
        scope: None,
    }
}

/// The key-encryption keys of a service whose only KEK is `kek` (base64).
pub(crate) fn kek_ring(kek: &str) -> KekRing {
    KekRing {
        current: Kek::parse(kek).unwrap(),
        previous: vec![],
    }
}

async fn real_key(app: &TestApp) -> (String, EncodingKey) {
    let keys = app.store.signing_keys().await.unwrap();
    let key = &keys[0];
    let der = kek_ring(crate::helpers::KEK)
        .unwrap_key(&key.kid, &key.private_der)
        .unwrap();
    (key.kid.clone(), EncodingKey::from_ed_der(&der))
}

fn sign(kid: &str, key: &EncodingKey, claims: &Claims) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

async fn me_with(app: &TestApp, token: &str) -> reqwest::Response {
    app.get_with("/api/v1/users/me", token).await
}

async fn assert_refused(app: &TestApp, token: &str, what: &str) {
    let r = me_with(app, token).await;
    assert_eq!(r.status(), 401, "{what} was accepted");
    assert_eq!(r.headers()["www-authenticate"], "Bearer", "{what}");
    problem(r, 401).await;
}

async fn forged_and_misused_tokens_are_refused(app: TestApp) {
    let pair = app.customer("mallory@example.com").await;
    let session = jwt_claims(access(&pair));
    let user = (
        app.user_id(access(&pair)).await,
        session["sid"].as_str().unwrap().to_owned(),
    );
    let (kid, key) = real_key(&app).await;

    // Sanity: a token signed correctly by the test is accepted, so the refusals below mean something.
    assert_eq!(
        me_with(&app, &sign(&kid, &key, &claims_for(&user)))
            .await
            .status(),
        200
    );

    // alg: none.
    let header =
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "JWT", "kid": kid}).to_string());
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims_for(&user)).unwrap());
    assert_refused(&app, &format!("{header}.{payload}."), "alg none").await;

    // HS256 with the public key as the HMAC secret (raw bytes, and its base64 text).
    let jwks = app.fetch("/.well-known/jwks.json").await;
    let x = jwks["keys"][0]["x"].as_str().unwrap();
    let raw = URL_SAFE_NO_PAD.decode(x).unwrap();
    for secret in [raw.as_slice(), x.as_bytes()] {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some(kid.clone());
        let t = jsonwebtoken::encode(
            &h,
            &claims_for(&user),
            &EncodingKey::from_secret(secret).unwrap(),
        )
        .unwrap();
        assert_refused(&app, &t, "HS256 with the public key").await;
    }

    // Expired, not yet valid, wrong audience, wrong issuer.
    let mut c = claims_for(&user);
    c.exp = now() - 120;
    c.iat = now() - 1000;
    c.nbf = now() - 1000;
    assert_refused(&app, &sign(&kid, &key, &c), "expired").await;
    let mut c = claims_for(&user);
    c.nbf = now() + 300;
    assert_refused(&app, &sign(&kid, &key, &c), "not yet valid").await;
    let mut c = claims_for(&user);
    c.aud = "someone-else".into();
    assert_refused(&app, &sign(&kid, &key, &c), "wrong audience").await;
    let mut c = claims_for(&user);
    c.iss = "evil-issuer".into();
    assert_refused(&app, &sign(&kid, &key, &c), "wrong issuer").await;

    // Tampered payload: the customer's own token, promoted to admin, old signature.
    let token = access(&pair);
    let mut parts: Vec<&str> = token.split('.').collect();
    let mut claims = jwt_claims(token);
    claims["roles"] = json!(["customer", "admin"]);
    let tampered = URL_SAFE_NO_PAD.encode(claims.to_string());
    parts[1] = &tampered;
    assert_refused(&app, &parts.join("."), "tampered payload").await;

    // A well-formed token from a key the shop never had.
    let stranger = new_signing_key(0);
    assert_refused(
        &app,
        &sign(
            &stranger.kid,
            &EncodingKey::from_ed_der(&stranger.private_der),
            &claims_for(&user),
        ),
        "unknown kid",
    )
    .await;

    // A refresh token where an access token belongs; a service token as a user's.
    assert_refused(&app, refresh(&pair), "refresh token as access token").await;
    let mut c = claims_for(&user);
    c.token_type = TokenType::Service;
    assert_refused(&app, &sign(&kid, &key, &c), "service token as user token").await;

    // Garbage and wrong schemes.
    assert_refused(&app, "not.a.jwt", "garbage").await;
    let r = app
        .get("/api/v1/users/me")
        .header("authorization", format!("Basic {}", access(&pair)))
        .send()
        .await
        .unwrap();
    problem(r, 401).await;
}
both!(forged_and_misused_tokens_are_refused);

async fn rotation_keeps_old_tokens_valid(app: TestApp) {
    let before = app.customer("rotor@example.com").await;
    let old_kid = jsonwebtoken::decode_header(access(&before))
        .unwrap()
        .kid
        .unwrap();
    // Created a second after the first key, whatever the clock's resolution.
    let first_created = app.store.signing_keys().await.unwrap()[0].created_at;
    let mut new_key = new_signing_key(first_created + 1000);
    new_key.kid = format!("z{}", new_key.kid);
    let kek = Kek::parse(crate::helpers::KEK).unwrap();
    new_key.private_der = kek.wrap(&new_key.kid, &new_key.private_der);
    app.store.insert_signing_key(&new_key).await.unwrap();

    let after = app
        .login_pair("rotor@example.com", crate::helpers::PASSWORD)
        .await;
    let new_kid = jsonwebtoken::decode_header(access(&after))
        .unwrap()
        .kid
        .unwrap();
    assert_eq!(
        new_kid, new_key.kid,
        "new tokens are signed with the newest key"
    );
    assert_ne!(new_kid, old_kid);
    assert_eq!(
        me_with(&app, access(&before)).await.status(),
        200,
        "old token still valid"
    );
    assert_eq!(me_with(&app, access(&after)).await.status(), 200);
    let jwks = app.fetch("/.well-known/jwks.json").await;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert!(
        kids.contains(&old_kid.as_str()) && kids.contains(&new_kid.as_str()),
        "{kids:?}"
    );
}

both!(rotation_keeps_old_tokens_valid, |s| s
    .tokens
    .key_reload_secs =
    0);

/// Signing keys at rest are wrapped under the KEK: what the table holds does
/// not parse as a key, and only the configured KEK opens it.
async fn signing_keys_are_encrypted_at_rest(app: TestApp) {
    let stored = app.store.signing_keys().await.unwrap();
    assert!(!stored.is_empty());
    for key in &stored {
        assert!(
            aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8(&key.private_der).is_err(),
            "a stored key parses as PKCS#8"
        );
        assert!(emporium_accounts::kek::is_wrapped(&key.private_der));
        let other = kek_ring(&Kek::generate_text());
        assert!(other.unwrap_key(&key.kid, &key.private_der).is_err());
        let right = kek_ring(crate::helpers::KEK);
        let der = right.unwrap_key(&key.kid, &key.private_der).unwrap();
        assert!(aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8(&der).is_ok());
    }
    // And the service still signs with it.
    app.customer("wrapped@example.com").await;
}
both!(signing_keys_are_encrypted_at_rest);
