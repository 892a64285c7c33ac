//! Argon2id hashing off the async threads, with a bound on how many run at
//! once: each takes 19 MiB and tens of milliseconds of a core, so a login flood
//! queues here instead of exhausting memory.

use std::sync::Arc;

use argon2::password_hash::PasswordHasher;
use argon2::{Argon2, PasswordHash, PasswordVerifier};
use tokio::sync::Semaphore;

use crate::domain::NewPassword;

#[derive(Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
    /// A hash of a random password, verified when the email is unknown so that
    /// answer takes as long as a wrong password does.
    dummy: Arc<str>,
}

impl Hasher {
    pub async fn new() -> anyhow::Result<Self> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let permits = Arc::new(Semaphore::new(cores));
        let dummy_password = crate::tokens::random_token(24);
        let dummy = hash_blocking(dummy_password).await?;
        Ok(Self {
            permits,
            dummy: dummy.into(),
        })
    }

    pub async fn hash(&self, password: &NewPassword) -> anyhow::Result<String> {
        let _permit = self.permits.acquire().await?;
        hash_blocking(password.expose().to_owned()).await
    }

    /// Whether `password` matches `stored`; `None` verifies against the dummy hash.
    pub async fn verify(&self, password: &str, stored: Option<&str>) -> anyhow::Result<bool> {
        let _permit = self.permits.acquire().await?;
        let password = password.to_owned();
        let (stored, real) = match stored {
            Some(h) if !h.is_empty() => (h.to_owned(), true),
            _ => (self.dummy.to_string(), false),
        };
        let matched = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&stored)
                .map(|parsed| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await?;
        Ok(matched && real)
    }
}

async fn hash_blocking(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))
    })
    .await?
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::domain::PasswordPolicy;

    #[tokio::test]
    async fn hashes_are_argon2id_with_the_owasp_parameters() {
        let hasher = Hasher::new().await.unwrap();
        let pw = PasswordPolicy::new()
            .check("correct horse battery staple")
            .unwrap();
        let hash = hasher.hash(&pw).await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(
            hasher
                .verify("correct horse battery staple", Some(&hash))
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify("correct horse battery stapler", Some(&hash))
                .await
                .unwrap()
        );
        assert!(!hasher.verify("anything", None).await.unwrap());
    }
}
