//! The typed client of catalog's reservation API.
//!
//! Every call is keyed by the reservation id (the order's id) and the step,
//! so the client retries transient failures itself; what it returns is either
//! the reservation or a definite answer the saga acts on.

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
    /// It expired before the commit; its stock went back.
    #[error("the reservation expired")]
    Expired,
    /// It was already settled the other way (released when committing, or the reverse).
    #[error("the reservation is already settled: {0}")]
    Settled(String),
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
            (404, _) => Self::NotFound,
            (400 | 422, _) => Self::Invalid(problem.to_string()),
            _ => Self::Call(error),
        }
    }
}

/// Catalog's reservations, for the service that sells (scope `stock:reserve`).
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
        match self.settle(id, "commit", context).await {
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
