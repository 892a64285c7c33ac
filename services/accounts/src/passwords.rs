//! Argon2id hashing on a fixed pool of threads with a bounded queue.
//!
//! Each hash takes 19 MiB and tens of milliseconds of a core. A fixed pool
//! (one thread per core by default) runs them, and each of its threads
//! allocates its Argon2 memory once and reuses it for every hash: allocating
//! and freeing 19 MiB per hash made glibc raise its mmap threshold and then
//! keep every freed block in its heaps (the process grew by about 17 MiB per
//! hash and never shrank). Jobs beyond the running ones wait in a bounded
//! queue; when it is full the caller is told at once ([`HashError::Busy`],
//! answered 503 with `Retry-After`) instead of waiting.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use std::cell::RefCell;

use argon2::password_hash::phc::{Output, ParamsString, Salt};
use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, Version};
use aws_lc_rs::rand::SecureRandom;

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
        // On a pool thread (its memory is reused later), waiting for a place
        // in the queue: at start nothing else is queued.
        let dummy_password = crate::tokens::random_token(24);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(hash_now(&dummy_password));
        });
        let sender = jobs.clone();
        tokio::task::spawn_blocking(move || sender.send(job))
            .await?
            .map_err(|_| anyhow::anyhow!("the hashing threads stopped"))?;
        let dummy = rx.await?.map_err(anyhow::Error::msg)?;
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
        let matched = self.run(move || verify_now(&password, &stored)).await?;
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

thread_local! {
    /// This thread's Argon2 memory, allocated on first use and kept.
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// The largest memory a stored hash may ask for (64 MiB); more is refused.
const MAX_BLOCKS: usize = 64 * 1024;

fn with_memory<T>(blocks: usize, f: impl FnOnce(&mut [Block]) -> T) -> T {
    MEMORY.with(|memory| {
        let mut memory = memory.borrow_mut();
        if memory.len() < blocks {
            memory.resize(blocks, Block::new());
        }
        f(&mut memory[..blocks])
    })
}

/// Argon2id with the OWASP parameters (m=19456 KiB, t=2, p=1), a 16-byte
/// random salt, as a PHC string.
fn hash_now(password: &str) -> Result<String, String> {
    let params = Params::default();
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let mut salt = [0u8; 16];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| "no randomness for a salt".to_owned())?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    with_memory(params.block_count(), |memory| {
        argon.hash_password_into_with_memory(password.as_bytes(), &salt, &mut out, memory)
    })
    .map_err(|e| format!("hashing failed: {e}"))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| e.to_string())?,
        salt: Some(Salt::new(&salt).map_err(|e| e.to_string())?),
        hash: Some(Output::new(&out).map_err(|e| e.to_string())?),
    };
    Ok(phc.to_string())
}

/// Whether `password` gives the stored PHC hash, with the parameters it names.
fn verify_now(password: &str, stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    let (Ok(algorithm), Some(salt), Some(expected)) = (
        Algorithm::try_from(parsed.algorithm.as_str()),
        parsed.salt.as_ref(),
        parsed.hash.as_ref(),
    ) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    if params.block_count() > MAX_BLOCKS {
        return false;
    }
    let argon = Argon2::new(algorithm, version, params.clone());
    let mut out = vec![0u8; expected.len()];
    let computed = with_memory(params.block_count(), |memory| {
        argon.hash_password_into_with_memory(password.as_bytes(), salt.as_ref(), &mut out, memory)
    });
    computed.is_ok()
        && aws_lc_rs::constant_time::verify_slices_are_equal(&out, expected.as_bytes()).is_ok()
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

    #[test]
    fn hashes_made_elsewhere_verify_and_ours_are_standard() {
        use argon2::password_hash::PasswordHasher;
        // A hash from the argon2 crate's own API (as stored by older versions).
        let theirs = Argon2::default()
            .hash_password(b"correct horse battery staple")
            .unwrap()
            .to_string();
        assert!(verify_now("correct horse battery staple", &theirs));
        assert!(!verify_now("correct horse battery stapler", &theirs));
        // Ours verify with the crate's own verifier.
        use argon2::password_hash::PasswordVerifier;
        let ours = hash_now("correct horse battery staple").unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse battery staple", &parsed)
                .is_ok()
        );
        assert!(!verify_now("x", "not a hash"));
        // A hash asking for more than 64 MiB is not computed.
        let greedy = ours.replace("m=19456", "m=4194304");
        assert!(!verify_now("correct horse battery staple", &greedy));
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
