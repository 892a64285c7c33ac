//! The card provider payments talks to, as a trait: the sandbox provider's
//! client implements it today ([`CardProvider`]), and a real provider's
//! adapter would implement it the same way, translating its own API.
//!
//! Every money-moving call carries an idempotency key: made again with the
//! same key, it moves nothing a second time and answers as the first did.

use async_trait::async_trait;
use emporium_client::provider::{CardProvider, Moved, ProviderError};
use emporium_contracts::provider::{AuthorizeRequest, Cancellation, CardToken, TokenRequest};
use uuid::Uuid;

#[async_trait]
pub trait Provider: Send + Sync {
    /// Hands a card to the provider for a token (the number goes no further).
    async fn tokenize(&self, card: &TokenRequest) -> Result<CardToken, ProviderError>;
    async fn authorize(&self, key: &str, request: &AuthorizeRequest) -> Moved;
    /// Captures `amount` of the authorization (the rest is released).
    async fn capture(&self, key: &str, authorization: Uuid, amount: i64) -> Moved;
    async fn void(&self, key: &str, authorization: Uuid) -> Moved;
    async fn refund(&self, key: &str, authorization: Uuid, amount: i64) -> Moved;
    /// Voids whatever was authorized under `reference`, now or later.
    async fn cancel(&self, reference: Uuid) -> Result<Cancellation, ProviderError>;
}

#[async_trait]
impl Provider for CardProvider {
    async fn tokenize(&self, card: &TokenRequest) -> Result<CardToken, ProviderError> {
        CardProvider::tokenize(self, card).await
    }

    async fn authorize(&self, key: &str, request: &AuthorizeRequest) -> Moved {
        CardProvider::authorize(self, key, request).await
    }

    async fn capture(&self, key: &str, authorization: Uuid, amount: i64) -> Moved {
        CardProvider::capture(self, key, authorization, amount).await
    }

    async fn void(&self, key: &str, authorization: Uuid) -> Moved {
        CardProvider::void(self, key, authorization).await
    }

    async fn refund(&self, key: &str, authorization: Uuid, amount: i64) -> Moved {
        CardProvider::refund(self, key, authorization, amount).await
    }

    async fn cancel(&self, reference: Uuid) -> Result<Cancellation, ProviderError> {
        CardProvider::cancel(self, reference).await
    }
}

/// A provider whose client is set after payments is built: the sandbox
/// provider sends its webhooks to payments, so when both start together
/// (tests of payments and of the services that call it) payments must be
/// bound before the provider knows where to notify it.
#[derive(Debug, Default)]
pub struct LateProvider(std::sync::OnceLock<CardProvider>);

impl LateProvider {
    /// Sets the client once; later calls change nothing.
    pub fn set(&self, provider: CardProvider) {
        let _ = self.0.set(provider);
    }

    fn get(&self) -> Result<&CardProvider, ProviderError> {
        self.0
            .get()
            .ok_or_else(|| ProviderError::Invalid("the card provider is not connected yet".into()))
    }
}

#[async_trait]
impl Provider for LateProvider {
    async fn tokenize(&self, card: &TokenRequest) -> Result<CardToken, ProviderError> {
        self.get()?.tokenize(card).await
    }
    async fn authorize(&self, key: &str, request: &AuthorizeRequest) -> Moved {
        self.get()?.authorize(key, request).await
    }
    async fn capture(&self, key: &str, authorization: Uuid, amount: i64) -> Moved {
        self.get()?.capture(key, authorization, amount).await
    }
    async fn void(&self, key: &str, authorization: Uuid) -> Moved {
        self.get()?.void(key, authorization).await
    }
    async fn refund(&self, key: &str, authorization: Uuid, amount: i64) -> Moved {
        self.get()?.refund(key, authorization, amount).await
    }
    async fn cancel(&self, reference: Uuid) -> Result<Cancellation, ProviderError> {
        self.get()?.cancel(reference).await
    }
}
