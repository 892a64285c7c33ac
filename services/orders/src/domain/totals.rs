//! What an order costs: its lines and the breakdown `{subtotal, discount,
//! shipping, tax, total}`, in integer minor units of one ISO 4217 currency.
//!
//! Every product and sum is checked: an amount that does not fit in an `i64`
//! is an error, never a wrapped number that would charge a customer
//! something else. The lines and the totals are stored in the order's events,
//! so they are checked once here, where they are made, and trusted after.
//!
//! Today discounts, shipping and tax are all 0: an order costs the sum of its
//! prices. A pricing step (a later issue) will fill them in, between placing
//! the order and reserving its stock, without changing these types — that is
//! why a line carries its discount, tax and total already, and why the order
//! records a `priced` event that today repeats the placed prices.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use emporium_contracts::currency::is_active_currency;

/// An amount in minor units (cents) of an ISO 4217 currency: `{"amount":
/// 1999, "currency": "EUR"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    pub amount: i64,
    pub currency: String,
}

impl Money {
    pub fn new(amount: i64, currency: impl Into<String>) -> Self {
        Self {
            amount,
            currency: currency.into(),
        }
    }
}

/// One product of an order, with what it was sold at. The product's name and
/// SKU are copied in: the order must read the same after the catalog changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub product_id: Uuid,
    pub sku: String,
    pub name: String,
    /// The price of one, in minor units, when the order was placed.
    pub unit_price: i64,
    pub quantity: i64,
    /// Taken off this line (minor units, not negative).
    pub discount: i64,
    /// Added to this line (minor units, not negative).
    pub tax: i64,
    /// `unit_price × quantity − discount + tax`.
    pub total: i64,
}

/// Why lines or totals could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TotalsError {
    /// A product or a sum does not fit in 64 bits.
    #[error("an amount is too large")]
    Overflow,
    /// An amount that must not be negative is (`unit_price`, `discount`,
    /// `tax`, `shipping`), or a discount is larger than what it is taken off.
    #[error("{0} must not be negative")]
    Negative(&'static str),
    #[error("quantity must be at least 1")]
    Quantity,
    /// The line at `index` has a `total` other than its parts make.
    #[error("line {index}: total is not unit_price × quantity − discount + tax")]
    LineTotal { index: usize },
    #[error("currency must be an active ISO 4217 code such as EUR")]
    Currency,
}

/// A line's gross (`unit_price × quantity`) and total, checked.
fn line_amounts(
    unit_price: i64,
    quantity: i64,
    discount: i64,
    tax: i64,
) -> Result<(i64, i64), TotalsError> {
    if unit_price < 0 {
        return Err(TotalsError::Negative("unit_price"));
    }
    if quantity < 1 {
        return Err(TotalsError::Quantity);
    }
    if discount < 0 {
        return Err(TotalsError::Negative("discount"));
    }
    if tax < 0 {
        return Err(TotalsError::Negative("tax"));
    }
    let gross = unit_price
        .checked_mul(quantity)
        .ok_or(TotalsError::Overflow)?;
    // Both are not negative, so this cannot overflow; a discount above the
    // price would make the line pay the customer.
    let net = gross - discount;
    if net < 0 {
        return Err(TotalsError::Negative("unit_price × quantity − discount"));
    }
    let total = net.checked_add(tax).ok_or(TotalsError::Overflow)?;
    Ok((gross, total))
}

impl Line {
    /// A line at `unit_price` each, with no discount and no tax (what every
    /// line is until pricing exists).
    pub fn new(
        product_id: Uuid,
        sku: impl Into<String>,
        name: impl Into<String>,
        unit_price: i64,
        quantity: i64,
    ) -> Result<Self, TotalsError> {
        let (_, total) = line_amounts(unit_price, quantity, 0, 0)?;
        Ok(Self {
            product_id,
            sku: sku.into(),
            name: name.into(),
            unit_price,
            quantity,
            discount: 0,
            tax: 0,
            total,
        })
    }
}

/// An order's cost, `{subtotal, discount, shipping, tax, total}`, each
/// `{amount, currency}`. `total` is what the customer is charged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Σ `unit_price × quantity` over the lines.
    pub subtotal: Money,
    /// Σ of the lines' discounts.
    pub discount: Money,
    pub shipping: Money,
    /// Σ of the lines' taxes.
    pub tax: Money,
    /// `subtotal − discount + shipping + tax`.
    pub total: Money,
}

impl Totals {
    /// The totals of `lines` plus `shipping`, in `currency`.
    ///
    /// Refused: a currency that is not active ISO 4217 (`EUR`, not `eur`), a
    /// negative amount anywhere, a quantity below 1, a line whose `total` is
    /// not what its parts make (the line came from somewhere that computed it
    /// differently, and the customer would see two prices), and anything too
    /// large for an `i64`. No lines is allowed (an empty cart costs nothing);
    /// an order refuses an empty list before it gets here.
    pub fn of(lines: &[Line], shipping: i64, currency: &str) -> Result<Self, TotalsError> {
        if !is_active_currency(currency) {
            return Err(TotalsError::Currency);
        }
        if shipping < 0 {
            return Err(TotalsError::Negative("shipping"));
        }
        let (mut subtotal, mut discount, mut tax) = (0_i64, 0_i64, 0_i64);
        for (index, line) in lines.iter().enumerate() {
            let (gross, total) =
                line_amounts(line.unit_price, line.quantity, line.discount, line.tax)?;
            if total != line.total {
                return Err(TotalsError::LineTotal { index });
            }
            subtotal = subtotal.checked_add(gross).ok_or(TotalsError::Overflow)?;
            discount = discount
                .checked_add(line.discount)
                .ok_or(TotalsError::Overflow)?;
            tax = tax.checked_add(line.tax).ok_or(TotalsError::Overflow)?;
        }
        // Each line's discount is at most its gross, so the subtraction comes
        // first and stays at or above zero; only the additions can overflow.
        let total = subtotal
            .checked_sub(discount)
            .and_then(|t| t.checked_add(shipping))
            .and_then(|t| t.checked_add(tax))
            .ok_or(TotalsError::Overflow)?;
        if total < 0 {
            return Err(TotalsError::Negative("total"));
        }
        let money = |amount| Money::new(amount, currency);
        Ok(Self {
            subtotal: money(subtotal),
            discount: money(discount),
            shipping: money(shipping),
            tax: money(tax),
            total: money(total),
        })
    }

    /// The currency of every amount (they are made in one).
    pub fn currency(&self) -> &str {
        &self.total.currency
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn line(unit_price: i64, quantity: i64) -> Line {
        Line::new(id(10), "MUG-1", "Mug", unit_price, quantity).unwrap()
    }

    #[test]
    fn a_new_line_costs_its_price_times_its_quantity() {
        let l = line(1250, 3);
        assert_eq!((l.discount, l.tax, l.total), (0, 0, 3750));
        assert_eq!(l.sku, "MUG-1");
        assert_eq!(line(0, 1).total, 0, "a free item is a price");
        assert_eq!(line(i64::MAX, 1).total, i64::MAX);
        assert_eq!(line(1, i64::MAX).total, i64::MAX);
    }

    #[test]
    fn a_new_line_refuses_what_it_cannot_be() {
        let new = |price, quantity| Line::new(id(10), "S", "N", price, quantity);
        assert_eq!(new(i64::MAX, 2), Err(TotalsError::Overflow));
        assert_eq!(new(2, i64::MAX), Err(TotalsError::Overflow));
        assert_eq!(new(i64::MAX / 2 + 1, 2), Err(TotalsError::Overflow));
        assert_eq!(new(i64::MAX / 2, 2).map(|l| l.total), Ok(i64::MAX - 1));
        assert_eq!(new(-1, 1), Err(TotalsError::Negative("unit_price")));
        assert_eq!(new(i64::MIN, 1), Err(TotalsError::Negative("unit_price")));
        assert_eq!(new(100, 0), Err(TotalsError::Quantity));
        assert_eq!(new(100, -1), Err(TotalsError::Quantity));
        assert_eq!(new(100, i64::MIN), Err(TotalsError::Quantity));
    }

    #[test]
    fn totals_add_up_the_lines_and_shipping() {
        let lines = [line(1250, 2), line(999, 1)];
        let totals = Totals::of(&lines, 0, "EUR").unwrap();
        assert_eq!(totals.subtotal, Money::new(3499, "EUR"));
        assert_eq!(totals.discount, Money::new(0, "EUR"));
        assert_eq!(totals.shipping, Money::new(0, "EUR"));
        assert_eq!(totals.tax, Money::new(0, "EUR"));
        assert_eq!(totals.total, Money::new(3499, "EUR"));
        assert_eq!(totals.currency(), "EUR");

        let with_shipping = Totals::of(&lines, 495, "EUR").unwrap();
        assert_eq!(with_shipping.total.amount, 3994);
        let none = Totals::of(&[], 0, "JPY").unwrap();
        assert_eq!(none.total, Money::new(0, "JPY"));
    }

    #[test]
    fn discounts_and_taxes_of_priced_lines_are_summed() {
        let priced = |unit_price: i64, quantity: i64, discount: i64, tax: i64| Line {
            discount,
            tax,
            total: unit_price * quantity - discount + tax,
            ..line(unit_price, quantity)
        };
        let lines = [priced(1000, 2, 200, 342), priced(500, 1, 0, 95)];
        let totals = Totals::of(&lines, 490, "EUR").unwrap();
        assert_eq!(totals.subtotal.amount, 2500);
        assert_eq!(totals.discount.amount, 200);
        assert_eq!(totals.tax.amount, 437);
        assert_eq!(totals.shipping.amount, 490);
        assert_eq!(totals.total.amount, 2500 - 200 + 490 + 437);
        assert_eq!(
            totals.total.amount,
            lines.iter().map(|l| l.total).sum::<i64>() + 490
        );
        let whole_discount = priced(1000, 1, 1000, 0);
        assert_eq!(
            Totals::of(&[whole_discount], 0, "EUR")
                .unwrap()
                .total
                .amount,
            0
        );
    }

    #[test]
    fn a_line_that_does_not_add_up_is_refused() {
        let wrong = Line {
            total: 2499,
            ..line(1250, 2)
        };
        assert_eq!(
            Totals::of(&[line(1, 1), wrong], 0, "EUR"),
            Err(TotalsError::LineTotal { index: 1 })
        );
        let untaxed = Line {
            tax: 10,
            ..line(1250, 2)
        };
        assert_eq!(
            Totals::of(&[untaxed], 0, "EUR"),
            Err(TotalsError::LineTotal { index: 0 })
        );
    }

    #[test]
    fn negative_amounts_are_refused() {
        let base = line(1000, 1);
        let cases = [
            (
                Line {
                    discount: -1,
                    total: 1001,
                    ..base.clone()
                },
                TotalsError::Negative("discount"),
            ),
            (
                Line {
                    tax: -1,
                    total: 999,
                    ..base.clone()
                },
                TotalsError::Negative("tax"),
            ),
            (
                Line {
                    unit_price: -1000,
                    total: -1000,
                    ..base.clone()
                },
                TotalsError::Negative("unit_price"),
            ),
            (
                Line {
                    quantity: 0,
                    total: 0,
                    ..base.clone()
                },
                TotalsError::Quantity,
            ),
            (
                Line {
                    discount: 1001,
                    total: -1,
                    ..base.clone()
                },
                TotalsError::Negative("unit_price × quantity − discount"),
            ),
            (
                // A tax that would make up for too large a discount does not.
                Line {
                    discount: 1001,
                    tax: 5,
                    total: 4,
                    ..base.clone()
                },
                TotalsError::Negative("unit_price × quantity − discount"),
            ),
        ];
        for (bad, error) in cases {
            assert_eq!(
                Totals::of(std::slice::from_ref(&bad), 0, "EUR"),
                Err(error),
                "{bad:?}"
            );
        }
        assert_eq!(
            Totals::of(std::slice::from_ref(&base), -1, "EUR"),
            Err(TotalsError::Negative("shipping"))
        );
        assert_eq!(
            Totals::of(&[base], i64::MIN, "EUR"),
            Err(TotalsError::Negative("shipping"))
        );
    }

    #[test]
    fn sums_at_the_edge_of_i64_are_checked() {
        let max = line(i64::MAX, 1);
        assert_eq!(
            Totals::of(std::slice::from_ref(&max), 0, "EUR")
                .unwrap()
                .total
                .amount,
            i64::MAX
        );
        assert_eq!(
            Totals::of(&[max.clone(), line(1, 1)], 0, "EUR"),
            Err(TotalsError::Overflow)
        );
        assert_eq!(
            Totals::of(std::slice::from_ref(&max), 1, "EUR"),
            Err(TotalsError::Overflow)
        );
        assert_eq!(
            Totals::of(&[line(i64::MAX - 1, 1)], 1, "EUR")
                .unwrap()
                .total
                .amount,
            i64::MAX
        );
        // A discount makes room for shipping: the subtraction comes first.
        let discounted = Line {
            discount: 10,
            total: i64::MAX - 10,
            ..max.clone()
        };
        assert_eq!(
            Totals::of(&[discounted], 10, "EUR").unwrap().total.amount,
            i64::MAX
        );
        let taxed = Line {
            tax: 1,
            total: i64::MAX,
            ..line(i64::MAX - 1, 1)
        };
        assert_eq!(
            Totals::of(std::slice::from_ref(&taxed), 0, "EUR")
                .unwrap()
                .tax
                .amount,
            1
        );
        assert_eq!(Totals::of(&[taxed], 1, "EUR"), Err(TotalsError::Overflow));
        let over_taxed = Line {
            tax: 1,
            total: i64::MIN,
            ..max.clone()
        };
        assert_eq!(
            Totals::of(&[over_taxed], 0, "EUR"),
            Err(TotalsError::Overflow)
        );
        let huge_quantity = Line {
            quantity: i64::MAX,
            unit_price: 2,
            total: -2,
            ..max
        };
        assert_eq!(
            Totals::of(&[huge_quantity], 0, "EUR"),
            Err(TotalsError::Overflow)
        );
    }

    #[test]
    fn the_currency_is_an_active_iso_4217_code() {
        for good in ["EUR", "USD", "JPY", "GBP"] {
            assert!(Totals::of(&[line(1, 1)], 0, good).is_ok(), "{good}");
        }
        for bad in ["eur", "EURO", "", "XXX", "XTS", "XAU", "HRK", "ZZZ"] {
            assert_eq!(
                Totals::of(&[line(1, 1)], 0, bad),
                Err(TotalsError::Currency),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_json_shape_is_amount_and_currency_each() {
        let totals = Totals::of(&[line(1999, 1)], 0, "EUR").unwrap();
        let money = |amount: i64| serde_json::json!({"amount": amount, "currency": "EUR"});
        assert_eq!(
            serde_json::to_value(&totals).unwrap(),
            serde_json::json!({
                "subtotal": money(1999),
                "discount": money(0),
                "shipping": money(0),
                "tax": money(0),
                "total": money(1999),
            })
        );
        let back: Totals = serde_json::from_value(serde_json::to_value(&totals).unwrap()).unwrap();
        assert_eq!(back, totals);
        let l = line(1999, 1);
        let json = serde_json::to_value(&l).unwrap();
        assert_eq!(json["total"], 1999);
        assert_eq!(serde_json::from_value::<Line>(json).unwrap(), l);
    }
}
