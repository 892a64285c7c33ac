//! Payments' domain rules, pure and tested beside the code.

pub mod card;
pub mod intent;

pub use card::{Brand, Card, CardError, YearMonth};
pub use intent::{FailureReason, IllegalStep, IntentStatus, Step, Transitions};
