//! Service tokens: fetched once, shared by every call, refreshed before they expire.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use emporium_config::Secret;
use serde::Deserialize;

use crate::error::{CallError, RemoteProblem};

/// Where a client's bearer token comes from.
#[async_trait]
pub trait TokenSource: Send + Sync + std::fmt::Debug {
    /// A token valid for at least a little while longer.
    async fn token(&self) -> Result<Arc<str>, CallError>;
    /// The other service refused `token` (401): forget it, so the next
    /// [`token`](Self::token) fetches a new one (the key may have rotated, or
    /// the token been revoked).
    fn invalidate(&self, token: &str);
}

/// A fixed token (tests, and tools given a token by an operator).
#[derive(Debug, Clone)]
pub struct StaticToken(Arc<str>);

impl StaticToken {
    pub fn new(token: impl Into<String>) -> Self {
        Self(Arc::from(token.into()))
    }
}

#[async_trait]
impl TokenSource for StaticToken {
    async fn token(&self) -> Result<Arc<str>, CallError> {
        Ok(self.0.clone())
    }
    fn invalidate(&self, _token: &str) {}
}

#[derive(Debug, Clone)]
struct Held {
    token: Arc<str>,
    /// From here on the next call fetches a new one.
    refresh_at: Instant,
    /// After this the token is useless.
    expires_at: Instant,
}

/// OAuth 2.0 client credentials against the accounts service's token endpoint.
///
/// One token serves every call. It is renewed once 80% of its lifetime has
/// passed (at least 30 s before it expires, for tokens long enough to allow
/// it); concurrent callers that find it due wait for a single fetch. When a
/// renewal fails while the held token is still valid, calls go on with it.
#[derive(Debug)]
pub struct ClientCredentials {
    http: reqwest::Client,
    token_url: reqwest::Url,
    client_id: String,
    secret: Secret,
    scope: Option<String>,
    held: RwLock<Option<Held>>,
    fetching: tokio::sync::Mutex<()>,
    fetches: std::sync::atomic::AtomicU64,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: u64,
}

impl ClientCredentials {
    /// `token_url` is accounts' `…/api/v1/auth/token`; `scope` narrows the
    /// token to what this client needs (space-separated), or `None` for all
    /// the client holds.
    pub fn new(
        http: reqwest::Client,
        token_url: reqwest::Url,
        client_id: impl Into<String>,
        secret: Secret,
        scope: Option<String>,
    ) -> Self {
        Self {
            http,
            token_url,
            client_id: client_id.into(),
            secret,
            scope,
            held: RwLock::new(None),
            fetching: tokio::sync::Mutex::new(()),
            fetches: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// How many tokens were fetched so far (for metrics and tests).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn held(&self) -> Option<Held> {
        self.held.read().ok().and_then(|h| h.clone())
    }

    async fn fetch(&self) -> Result<Held, CallError> {
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.secret.expose()),
        ];
        if let Some(scope) = &self.scope {
            form.push(("scope", scope.as_str()));
        }
        let timeout = Duration::from_secs(5);
        let started = Instant::now();
        let response = self
            .http
            .post(self.token_url.clone())
            .timeout(timeout)
            .form(&form)
            .send()
            .await
            .map_err(|e| CallError::from_reqwest(&e, timeout))?;
        if !response.status().is_success() {
            let status = response.status();
            let body = response.bytes().await.unwrap_or_default();
            let problem = RemoteProblem::from_answer(status, &body, None);
            return Err(CallError::Problem(problem));
        }
        let answer: TokenAnswer = response
            .json()
            .await
            .map_err(|e| CallError::Decode(format!("token answer: {e}")))?;
        let lifetime = Duration::from_secs(answer.expires_in);
        let early = (lifetime / 5).max(Duration::from_secs(30).min(lifetime / 2));
        // Time the lifetime from when the request left: the token may be a little
        // older than the answer.
        Ok(Held {
            token: Arc::from(answer.access_token),
            refresh_at: started + lifetime.saturating_sub(early),
            expires_at: started + lifetime,
        })
    }
}

#[async_trait]
impl TokenSource for ClientCredentials {
    async fn token(&self) -> Result<Arc<str>, CallError> {
        if let Some(held) = self.held()
            && Instant::now() < held.refresh_at
        {
            return Ok(held.token);
        }
        let _one_fetch = self.fetching.lock().await;
        // Another caller may have fetched while this one waited.
        let held = self.held();
        if let Some(held) = &held
            && Instant::now() < held.refresh_at
        {
            return Ok(held.token.clone());
        }
        match self.fetch().await {
            Ok(fresh) => {
                let token = fresh.token.clone();
                if let Ok(mut slot) = self.held.write() {
                    *slot = Some(fresh);
                }
                Ok(token)
            }
            Err(e) => match held {
                Some(held) if Instant::now() < held.expires_at => {
                    tracing::warn!(client = %self.client_id, error = %e,
                        "Service token renewal failed; the current one is still valid.");
                    Ok(held.token)
                }
                _ => Err(CallError::Token(Box::new(e))),
            },
        }
    }

    fn invalidate(&self, token: &str) {
        if let Ok(mut slot) = self.held.write()
            && slot.as_ref().is_some_and(|h| &*h.token == token)
        {
            *slot = None;
        }
    }
}
