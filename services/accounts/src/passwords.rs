//! Argon2id hashing on a fixed pool of threads with a bounded queue.
//!
//! Each hash takes 19 MiB and tens of milliseconds of a core. A fixed pool
//! (one thread per core by default) keeps that memory to a few buffers that
//! are reused, where `spawn_blocking` would start up to hundreds of threads,
//! each keeping its own allocator arena. Jobs beyond the running ones wait in
//! a bounded queue; when it is full the caller is told at once
//! ([`HashError::Busy`], answered 503 with `Retry-After`) instead of waiting.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use argon2::password_hash::PasswordHasher;
use argon2::{Argon2, PasswordHash, PasswordVerifier};

use crate::domain::NewPassword;

type Job = Box<dyn FnOnce() + Send>;

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Every hashing thread is busy and the queue is full.
    #[error("password hashing is saturated")]
    Busy,
    #[error("password hashing failed: {0}")]
    Failed(String),
}

#[derive(Clone)]
pub struct Hasher {
    jobs: SyncSender<Job>,
    /// A hash of a random password, verified when the email is unknown so that
    /// answer takes as long as a wrong password does.
    dummy: Arc<str>,
}

impl Hasher {
    /// Starts `threads` hashing threads (0: one per core) with room for `queue` waiting jobs.
    pub async fn new(threads: usize, queue: usize) -> anyhow::Result<Self> {
        let threads = match threads {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let (jobs, receiver) = sync_channel::<Job>(queue);
        let receiver = Arc::new(Mutex::new(receiver));
        for i in 0..threads {
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || work(&receiver))?;
        }
        // Made beside the pool, so a small queue cannot refuse it at start.
        let dummy_password = crate::tokens::random_token(24);
        let dummy = tokio::task::spawn_blocking(move || hash_now(&dummy_password))
            .await?
            .map_err(anyhow::Error::msg)?;
        Ok(Self {
            jobs,
            dummy: dummy.into(),
        })
    }

    /// Runs `f` on the pool, or refuses at once when the queue is full.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                metrics::counter!("accounts_hashing_refused_total").increment(1);
                return Err(HashError::Busy);
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(HashError::Failed("the hashing threads stopped".into()));
            }
        }
        rx.await
            .map_err(|_| HashError::Failed("a hashing thread died".into()))
    }

    pub async fn hash(&self, password: &NewPassword) -> Result<String, HashError> {
        let password = password.expose().to_owned();
        self.run(move || hash_now(&password))
            .await?
            .map_err(HashError::Failed)
    }

    /// Whether `password` matches `stored`; `None` verifies against the dummy hash.
    pub async fn verify(&self, password: &str, stored: Option<&str>) -> Result<bool, HashError> {
        let password = password.to_owned();
        let (stored, real) = match stored {
            Some(h) if !h.is_empty() => (h.to_owned(), true),
            _ => (self.dummy.to_string(), false),
        };
        let matched = self
            .run(move || {
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

fn work(receiver: &Mutex<Receiver<Job>>) {
    loop {
        let job = match receiver.lock() {
            Ok(r) => r.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        match job {
            Ok(job) => job(),
            // Every Hasher is gone: the pool ends.
            Err(_) => return,
        }
    }
}

fn hash_now(password: &str) -> Result<String, String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| format!("hashing failed: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::domain::PasswordPolicy;

    #[tokio::test]
    async fn hashes_are_argon2id_with_the_owasp_parameters() {
        let hasher = Hasher::new(1, 4).await.unwrap();
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

    #[tokio::test]
    async fn a_full_queue_refuses_at_once() {
        let hasher = Hasher::new(1, 2).await.unwrap();
        // One running and two waiting fill it; everything else is refused now.
        let tasks: Vec<_> = (0..12)
            .map(|_| {
                let h = hasher.clone();
                tokio::spawn(async move { h.verify("a wrong password", None).await })
            })
            .collect();
        let mut busy = 0;
        let mut done = 0;
        for t in tasks {
            match t.await.unwrap() {
                Err(HashError::Busy) => busy += 1,
                Ok(false) => done += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!((1..=3).contains(&done), "ran {done}");
        assert_eq!(busy + done, 12);
    }
}
