//! Token verifications per second: one EdDSA access token checked against a
//! warm key cache (signature, algorithm pin, issuer, audience, expiry, type).
//! Run with `cargo bench -p emporium-auth`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use emporium_auth::testing::{MemoryJwks, TestKey, claims};
use emporium_auth::{Role, TokenType, Verifier, VerifierSettings};

fn verify(c: &mut Criterion) {
    let key = TestKey::generate("bench");
    let mut access = claims(
        "emporium-accounts",
        "emporium",
        "01900000-0000-7000-8000-000000000000",
        TokenType::Access,
        vec![Role::Customer],
        None,
    );
    access.exp += 3600;
    access.sid = Some("01900000-0000-7000-8000-000000000002".into());
    let token = key.sign(&access);
    let verifier = Verifier::new(
        VerifierSettings::new("emporium-accounts", "emporium"),
        MemoryJwks::with(&[&key]),
    );
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(verifier.refresh_keys())
        .expect("keys load");

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
