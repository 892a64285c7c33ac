//! Every scope a service client can hold, named once.
//!
//! A service's internal routes demand one of these (`ServiceCaller<S>` with
//! `S::NAME` set to the constant); `emporium up` and `accounts create-client`
//! grant them; the calling service asks for them. A scope is
//! `<resource>:<action>`.

/// Reserve, keep, release and commit stock (catalog's `/internal/v1/reservations`),
/// and look products up (`/internal/v1/products/lookup`).
pub const STOCK_RESERVE: &str = "stock:reserve";
/// Adjust stock levels on behalf of a service (restocking after a refund:
/// catalog's `/internal/v1/reservations/{id}/restock`).
pub const STOCK_ADJUST: &str = "stock:adjust";
/// Authorize a payment for an order.
pub const PAYMENTS_AUTHORIZE: &str = "payments:authorize";
/// Capture an authorized payment.
pub const PAYMENTS_CAPTURE: &str = "payments:capture";
/// Void an authorization that was not captured.
pub const PAYMENTS_VOID: &str = "payments:void";
/// Refund a captured payment, in full or in part.
pub const PAYMENTS_REFUND: &str = "payments:refund";

/// Every scope above: what a client may be granted.
pub const ALL: [&str; 6] = [
    STOCK_RESERVE,
    STOCK_ADJUST,
    PAYMENTS_AUTHORIZE,
    PAYMENTS_CAPTURE,
    PAYMENTS_VOID,
    PAYMENTS_REFUND,
];

/// What the orders service needs to run a checkout and its later transitions.
pub const ORDERS: [&str; 6] = ALL;

/// Whether `scope` is one this shop knows.
pub fn is_known(scope: &str) -> bool {
    ALL.contains(&scope)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scope_is_resource_colon_action_and_unique() {
        for (i, scope) in ALL.iter().enumerate() {
            let (resource, action) = scope.split_once(':').unwrap_or_default();
            assert!(!resource.is_empty() && !action.is_empty(), "{scope}");
            assert!(scope.bytes().all(|b| b.is_ascii_lowercase() || b == b':'));
            assert!(!ALL[i + 1..].contains(scope), "{scope} twice");
        }
        assert!(is_known("stock:reserve"));
        assert!(!is_known("stock:reserve "));
    }
}
