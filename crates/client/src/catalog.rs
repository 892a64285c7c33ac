//! The typed clients of catalog's internal API: reservations
//! ([`Reservations`]) and the batched product lookup ([`Products`]).
//!
//! Every reservation call is keyed by the reservation id (the order's id) and
//! the step, so the client retries transient failures itself; what it returns
//! is either the reservation or a definite answer the saga acts on.

use emporium_contracts::products::{LookupRequest, LookupResponse, PRODUCTS_LOOKUP_PATH};
use emporium_contracts::reservations::{
    RESERVATIONS_PATH, Reservation, ReservationStatus, ReserveItem, ReserveRequest, problems,
};
use emporium_http::RequestContext;
use uuid::Uuid;

use crate::call::ServiceClient;
use crate::error::CallError;

/// Why a reservation call did not give the reservation.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReservationError {
    /// Not enough stock of some product; nothing was reserved.
    #[error("out of stock: {0}")]
    OutOfStock(String),
    /// The id was used before for other items.
    #[error("the reservation id was used for other items")]
    Mismatch,
    /// Another client holds a reservation with this id.
    #[error("the reservation id is taken by another client")]
    IdTaken,
    /// It expired before the commit (or the keep); its stock went back.
    #[error("the reservation expired")]
    Expired,
    /// It was already settled the other way (released when committing, or the
    /// reverse; no longer active when keeping).
    #[error("the reservation is already settled: {0}")]
    Settled(String),
    /// A restock of a reservation that never shipped (active, released or
    /// expired): nothing to put back.
    #[error("the reservation was never committed: {0}")]
    NotCommitted(String),
    /// No such reservation of this client.
    #[error("no such reservation")]
    NotFound,
    /// The request broke the contract (unknown product, bad quantity): a bug, not a retry.
    #[error("the catalog refused the request: {0}")]
    Invalid(String),
    /// The call itself failed; [`CallError::is_retryable`] says whether to come back.
    #[error(transparent)]
    Call(CallError),
}

impl ReservationError {
    /// Whether the saga should try again later rather than compensate.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Call(e) if e.is_retryable())
    }

    /// Whether the catalog surely never saw the call ([`CallError::never_sent`]).
    pub fn never_sent(&self) -> bool {
        matches!(self, Self::Call(e) if e.never_sent())
    }
}

impl From<CallError> for ReservationError {
    fn from(error: CallError) -> Self {
        let Some(problem) = error.problem() else {
            return Self::Call(error);
        };
        let detail = problem.detail.clone().unwrap_or_default();
        match (problem.status, problem.kind()) {
            (409, problems::OUT_OF_STOCK) => Self::OutOfStock(detail),
            (409, problems::MISMATCH) => Self::Mismatch,
            (409, problems::ID_TAKEN) => Self::IdTaken,
            (409, problems::EXPIRED) => Self::Expired,
            (409, problems::SETTLED) => Self::Settled(detail),
            (409, problems::NOT_COMMITTED) => Self::NotCommitted(detail),
            (404, _) => Self::NotFound,
            (400 | 422, _) => Self::Invalid(problem.to_string()),
            _ => Self::Call(error),
        }
    }
}

/// Catalog's reservations, for the service that sells (scope `stock:reserve`;
/// [`Reservations::restock`] needs `stock:adjust`).
#[derive(Debug, Clone)]
pub struct Reservations {
    client: ServiceClient,
}

impl Reservations {
    /// `client` points at the catalog.
    pub fn new(client: ServiceClient) -> Self {
        Self { client }
    }

    /// Reserves every item or nothing. Repeating it with the same id and items
    /// answers the same reservation.
    pub async fn reserve(
        &self,
        id: Uuid,
        items: Vec<ReserveItem>,
        context: Option<&RequestContext>,
    ) -> Result<Reservation, ReservationError> {
        let body = ReserveRequest { id, items };
        let mut call = self
            .client
            .post(RESERVATIONS_PATH)
            .json(&body)?
            .idempotency_key(&format!("{id}:reserve"))?;
        if let Some(context) = context {
            call = call.context(context);
        }
        Ok(call.send::<Reservation>().await?.body)
    }

    /// The reservation as it stands.
    pub async fn get(
        &self,
        id: Uuid,
        context: Option<&RequestContext>,
    ) -> Result<Reservation, ReservationError> {
        let mut call = self.client.get(format!("{RESERVATIONS_PATH}/{id}"));
        if let Some(context) = context {
            call = call.context(context);
        }
        Ok(call.send::<Reservation>().await?.body)
    }

    /// Gives the stock back (compensation of a reserve). A reservation whose
    /// stock is already back (released before, or expired) is answered as it
    /// is: for the caller the compensation is done.
    pub async fn release(
        &self,
        id: Uuid,
        context: Option<&RequestContext>,
    ) -> Result<Reservation, ReservationError> {
        match self.settle(id, "release", context).await {
            Err(ReservationError::Settled(detail)) => match self.if_expired(id, context).await? {
                Some(reservation) => Ok(reservation),
                None => Err(ReservationError::Settled(detail)),
            },
            other => other,
        }
    }

    /// The goods leave the warehouse (the order shipped). A reservation that
    /// expired first, whether the commit or the sweeper found it so, is
    /// [`ReservationError::Expired`]: its stock is back on sale.
    pub async fn commit(
        &self,
        id: Uuid,
        context: Option<&RequestContext>,
    ) -> Result<Reservation, ReservationError> {
        self.unless_expired(id, "commit", context).await
    }

    /// The order is confirmed: the stock stays held until it ships
    /// ([`commit`](Self::commit)) or is cancelled ([`release`](Self::release)),
    /// however long the checkout's time to live was. Repeatable. A reservation
    /// that expired first, whether the keep or the sweeper found it so, is
    /// [`ReservationError::Expired`]: its stock is back on sale.
    pub async fn keep(
        &self,
        id: Uuid,
        context: Option<&RequestContext>,
    ) -> Result<Reservation, ReservationError> {
        self.unless_expired(id, "keep", context).await
    }

    /// The goods of a committed reservation came back: its stock is back on
    /// hand where it left from, and it is `restocked` (scope `stock:adjust`).
    /// Repeatable: a restocked reservation is answered as it is, nothing moves
    /// again. One that never shipped is [`ReservationError::NotCommitted`].
    pub async fn restock(
        &self,
        id: Uuid,
        context: Option<&RequestContext>,
    ) -> Result<Reservation, ReservationError> {
        self.settle(id, "restock", context).await
    }

    /// `step` on the reservation; settled as expired (by this step or the
    /// sweeper) it is [`ReservationError::Expired`].
    async fn unless_expired(
        &self,
        id: Uuid,
        step: &str,
        context: Option<&RequestContext>,
    ) -> Result<Reservation, ReservationError> {
        match self.settle(id, step, context).await {
            Err(ReservationError::Settled(detail)) => match self.if_expired(id, context).await? {
                Some(_) => Err(ReservationError::Expired),
                None => Err(ReservationError::Settled(detail)),
            },
            other => other,
        }
    }

    /// The reservation, if it is settled as expired (its stock is back on sale).
    async fn if_expired(
        &self,
        id: Uuid,
        context: Option<&RequestContext>,
    ) -> Result<Option<Reservation>, ReservationError> {
        let reservation = self.get(id, context).await?;
        Ok((reservation.status == ReservationStatus::Expired).then_some(reservation))
    }

    async fn settle(
        &self,
        id: Uuid,
        step: &str,
        context: Option<&RequestContext>,
    ) -> Result<Reservation, ReservationError> {
        let mut call = self
            .client
            .post(format!("{RESERVATIONS_PATH}/{id}/{step}"))
            .idempotency_key(&format!("{id}:{step}"))?;
        if let Some(context) = context {
            call = call.context(context);
        }
        Ok(call.send::<Reservation>().await?.body)
    }
}

/// Why a product lookup did not give its answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LookupError {
    /// The request broke the contract (no ids, or more than 100): a bug, not a retry.
    #[error("the catalog refused the lookup: {0}")]
    Invalid(String),
    /// The call itself failed; [`CallError::is_retryable`] says whether to come back.
    #[error(transparent)]
    Call(CallError),
}

impl LookupError {
    /// Whether trying again later can help.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Call(e) if e.is_retryable())
    }
}

impl From<CallError> for LookupError {
    fn from(error: CallError) -> Self {
        match error.problem() {
            Some(problem) if matches!(problem.status, 400 | 422) => {
                Self::Invalid(problem.to_string())
            }
            _ => Self::Call(error),
        }
    }
}

/// Catalog's batched product lookup, for the service that sells (scope `stock:reserve`).
#[derive(Debug, Clone)]
pub struct Products {
    client: ServiceClient,
}

impl Products {
    /// `client` points at the catalog.
    pub fn new(client: ServiceClient) -> Self {
        Self { client }
    }

    /// The live products among `ids` (1 to
    /// [`MAX_LOOKUP_IDS`](emporium_contracts::products::MAX_LOOKUP_IDS); an id
    /// twice is answered once) with their price and what is available, and
    /// the ids that name no product or a deleted one.
    pub async fn lookup(
        &self,
        ids: Vec<Uuid>,
        context: Option<&RequestContext>,
    ) -> Result<LookupResponse, LookupError> {
        let body = LookupRequest { ids };
        // A read sent as a POST (the ids make a body): keyed, so the client
        // retries it like any read. The catalog does not look at the key.
        let key = format!("lookup:{}", Uuid::new_v4());
        let mut call = self
            .client
            .post(PRODUCTS_LOOKUP_PATH)
            .json(&body)?
            .idempotency_key(&key)?;
        if let Some(context) = context {
            call = call.context(context);
        }
        Ok(call.send::<LookupResponse>().await?.body)
    }
}
