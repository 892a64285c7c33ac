//! Notifications to the merchant's webhook endpoint, as a real provider
//! sends them. A capture queues its notification in its own transaction
//! (`capture_settled`, or `capture_failed` for the card that fails late),
//! due `notify_after_ms` later, as a network settles a while after the
//! capture. This loop posts each one, signed (`emporium_auth::webhook`, in
//! the `provider-signature` header), until the endpoint answers 2xx, waiting
//! longer after each refusal, and gives up after `max_attempts`.
//!
//! Delivery is at least once. Several replicas may run the loop: each claims
//! the notifications it is about to send by moving their due time a lease
//! ahead, in a short write transaction, so two replicas do not send one at
//! the same time; a replica that dies mid-send leaves its claims to be sent
//! again once the lease ends. The receiver dedupes by the notification's id
//! anyway, as it must with any provider.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use emporium_config::Secret;
use emporium_contracts::provider::NotificationKind;
use emporium_contracts::provider::webhook::SIGNATURE_HEADER;
use emporium_db::SharedClock;
use futures_util::future::join_all;

use crate::config::ProviderSettings;
use crate::store::{Claimed, Store};

/// How often the loop looks for notifications that are due.
const POLL_EVERY: Duration = Duration::from_millis(100);
/// The most notifications one look claims (and sends at once).
const BATCH: i64 = 50;
/// How long one attempt may take, connecting included.
const TIMEOUT: Duration = Duration::from_secs(5);
/// How long a claim keeps other replicas off a notification: well beyond
/// [`TIMEOUT`], as a batch is sent all at once.
const LEASE_MS: i64 = 30_000;
/// The longest wait between two attempts.
const MAX_BACKOFF_MS: u64 = 60 * 60 * 1000;

/// The delivery of notifications to one endpoint.
pub struct Webhooks {
    store: Store,
    clock: SharedClock,
    /// Built once: connections and TLS sessions to the endpoint are reused.
    client: reqwest::Client,
    url: reqwest::Url,
    secret: Secret,
    retry_base_ms: u64,
    max_attempts: u32,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Neither the secret nor the URL (which may hold credentials).
        f.debug_struct("Webhooks")
            .field("retry_base_ms", &self.retry_base_ms)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

impl Webhooks {
    /// The delivery `settings` ask for, or `None` when they set no
    /// `webhook_url` (then nothing is queued either). Fails when the CA of
    /// `ca_cert` cannot be read, so a wrong path stops the start.
    pub fn new(
        store: Store,
        clock: SharedClock,
        settings: &ProviderSettings,
    ) -> anyhow::Result<Option<Self>> {
        if settings.webhook_url.is_empty() {
            return Ok(None);
        }
        let url = reqwest::Url::parse(&settings.webhook_url)
            .context("sandbox.webhook_url is not a URL")?;
        let ca = (!settings.ca_cert.is_empty()).then(|| PathBuf::from(&settings.ca_cert));
        let client = emporium_http::tls::client(ca.as_deref(), TIMEOUT)?;
        Ok(Some(Self {
            store,
            clock,
            client,
            url,
            secret: settings.webhook_secret.clone(),
            retry_base_ms: settings.retry_base_ms,
            max_attempts: settings.max_attempts,
        }))
    }

    /// Delivers until `stop` resolves. Stopping may cut an attempt short:
    /// its notification, still claimed, goes again once the claim's lease
    /// ends (the receiver dedupes it if it had arrived).
    pub async fn run(self, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                () = self.tick() => {}
            }
        }
    }

    async fn tick(&self) {
        if let Err(e) = self.deliver_due().await {
            tracing::warn!(error = %format!("{e:#}"), "Delivering notifications failed.");
        }
        tokio::time::sleep(POLL_EVERY).await;
    }

    /// One attempt at every notification due now (one batch, sent at once);
    /// gives how many the endpoint took.
    pub async fn deliver_due(&self) -> anyhow::Result<usize> {
        let now = self.clock.now_ms();
        let claimed = self
            .store
            .claim_notifications(now, now.saturating_add(LEASE_MS), BATCH)
            .await?;
        let outcomes = join_all(claimed.into_iter().map(|c| self.attempt(c))).await;
        let mut taken = 0;
        for outcome in outcomes {
            match outcome {
                Ok(true) => taken += 1,
                Ok(false) => {}
                // Still claimed: sent again once the lease ends.
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "Delivering a notification failed.");
                }
            }
        }
        Ok(taken)
    }

    /// One attempt at one notification; gives whether the endpoint took it.
    async fn attempt(&self, claimed: Claimed) -> anyhow::Result<bool> {
        let n = &claimed.notification;
        if n.kind == NotificationKind::CaptureFailed {
            // Made true at the provider first: a merchant who hears of the
            // failure and looks finds the authorization `capture_failed`.
            self.store
                .fail_capture(n.authorization_id, n.amount, self.clock.now_ms())
                .await?;
        }
        // Serialized once: the signature covers exactly the bytes sent.
        let body = serde_json::to_vec(n)?;
        let answer = self.post(body).await;
        let now = self.clock.now_ms();
        let failure = match answer {
            Ok(status) if status.is_success() => {
                self.store.notification_delivered(n.id, now).await?;
                return Ok(true);
            }
            Ok(status) => format!("the endpoint answered {status}"),
            // Without the URL, which may hold credentials.
            Err(e) => format!("{:#}", anyhow::Error::new(e.without_url())),
        };
        let attempts = claimed.attempts.saturating_add(1);
        if attempts >= i64::from(self.max_attempts) {
            self.store
                .notification_failed(n.id, attempts, None, now)
                .await?;
            tracing::warn!(
                notification_id = %n.id,
                attempts,
                failure = %failure,
                "Gave up delivering a notification: the endpoint never took it."
            );
        } else {
            let retry_at = now.saturating_add(backoff_ms(self.retry_base_ms, attempts));
            self.store
                .notification_failed(n.id, attempts, Some(retry_at), now)
                .await?;
            tracing::info!(
                notification_id = %n.id,
                attempts,
                failure = %failure,
                "The endpoint did not take a notification; it goes again later."
            );
        }
        Ok(false)
    }

    /// Posts `body`, signed now; gives the endpoint's status.
    async fn post(&self, body: Vec<u8>) -> Result<reqwest::StatusCode, reqwest::Error> {
        let now_secs = self.clock.now_ms().div_euclid(1000);
        let signature =
            emporium_auth::webhook::sign(self.secret.expose().as_bytes(), now_secs, &body);
        let response = self
            .client
            .post(self.url.clone())
            .header(SIGNATURE_HEADER, signature)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await?;
        Ok(response.status())
    }
}

/// The wait after the `attempts`-th failed attempt: `base` after the first,
/// doubling with each one after it, at most an hour.
fn backoff_ms(base: u64, attempts: i64) -> i64 {
    let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 63)).unwrap_or(63);
    let wait = base.saturating_mul(1_u64 << doublings).min(MAX_BACKOFF_MS);
    i64::try_from(wait).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_from_the_base_up_to_an_hour() {
        assert_eq!(backoff_ms(500, 1), 500);
        assert_eq!(backoff_ms(500, 2), 1_000);
        assert_eq!(backoff_ms(500, 5), 8_000);
        assert_eq!(backoff_ms(500, 14), 3_600_000);
        assert_eq!(backoff_ms(500, i64::MAX), 3_600_000);
        assert_eq!(backoff_ms(u64::MAX, 1), 3_600_000);
        assert_eq!(backoff_ms(500, 0), 500, "no attempt yet: the base");
        assert_eq!(backoff_ms(0, 3), 0);
    }
}
