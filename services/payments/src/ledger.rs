//! The ledger: double-entry and hash-chained.
//!
//! Every money movement is a ledger transaction of two entries over the
//! ledger's accounts whose amounts sum to zero (per currency):
//!
//! | movement  | entries                                   |
//! |-----------|-------------------------------------------|
//! | authorize | customer −a, holds +a (held on the card)   |
//! | capture   | holds −a, merchant +a (the shop has it)    |
//! | void      | holds −a, customer +a (the hold released)  |
//! | refund    | merchant −a, customer +a (paid back)       |
//! | reversal  | merchant −a, customer +a (a capture the network refused later) |
//!
//! An intent's balances are sums over its entries, never a stored number:
//! `holds` is what is authorized and not yet captured or released,
//! `merchant` what is captured and not refunded. Neither may go below zero.
//!
//! Each entry carries the SHA-256 of the entry before it (`prev_hash`) and its
//! own (`hash`), over a canonical encoding ([`Entry::canonical`]). Changing,
//! removing or reordering any entry breaks the chain from there on, and
//! [`verify`] names the first entry that does not hold.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use uuid::Uuid;

/// The `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One side of the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Account {
    /// The card holder's side.
    Customer,
    /// Authorized on the card, not yet captured or released.
    Holds,
    /// Captured: the shop's.
    Merchant,
}

/// What moved money.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Movement {
    Authorize,
    Capture,
    Void,
    Refund,
    /// A capture the network accepted and then refused: nothing was paid.
    Reversal,
}

impl Account {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Holds => "holds",
            Self::Merchant => "merchant",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Customer, Self::Holds, Self::Merchant]
            .into_iter()
            .find(|a| a.as_str() == text)
    }
}

impl Movement {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authorize => "authorize",
            Self::Capture => "capture",
            Self::Void => "void",
            Self::Refund => "refund",
            Self::Reversal => "reversal",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Authorize,
            Self::Capture,
            Self::Void,
            Self::Refund,
            Self::Reversal,
        ]
        .into_iter()
        .find(|m| m.as_str() == text)
    }

    /// The account `amount` leaves and the one it reaches.
    fn route(self) -> (Account, Account) {
        match self {
            Self::Authorize => (Account::Customer, Account::Holds),
            Self::Capture => (Account::Holds, Account::Merchant),
            Self::Void => (Account::Holds, Account::Customer),
            Self::Refund | Self::Reversal => (Account::Merchant, Account::Customer),
        }
    }
}

/// A money movement to record: `amount` (minor units, > 0) of `currency`
/// for one payment intent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub transaction_id: Uuid,
    pub intent_id: Uuid,
    pub movement: Movement,
    pub amount: i64,
    /// ISO 4217, three capital letters.
    pub currency: String,
}

impl Transfer {
    /// A transfer with a new transaction id.
    pub fn new(intent_id: Uuid, movement: Movement, amount: i64, currency: &str) -> Self {
        Self {
            transaction_id: Uuid::now_v7(),
            intent_id,
            movement,
            amount,
            currency: currency.to_owned(),
        }
    }
}

/// Why a transfer cannot be recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    #[error("the amount must be above zero")]
    NotPositive,
    #[error("the currency must be three capital letters")]
    Currency,
    #[error("the intent's {account} balance ({balance}) is below {amount}")]
    Insufficient {
        account: &'static str,
        balance: i64,
        amount: i64,
    },
    #[error("the intent's entries are in {0}, not in this currency")]
    CurrencyMismatch(String),
}

/// An entry as stored: one side of a transfer, in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// 1, 2, 3, … with no gaps.
    pub seq: i64,
    pub transaction_id: Uuid,
    pub intent_id: Uuid,
    pub movement: Movement,
    pub account: Account,
    /// Signed: what the account gains (+) or gives (−).
    pub amount: i64,
    pub currency: String,
    /// Unix milliseconds.
    pub at: i64,
    pub prev_hash: String,
    pub hash: String,
}

impl Entry {
    /// The bytes the hash is taken over: every field but `hash`, in a fixed
    /// order, `|`-separated. No field can hold a `|` (ids are UUIDs, names
    /// fixed words, amounts integers, currencies capital letters, hashes hex),
    /// so the encoding is unambiguous. `v1` names this layout.
    pub fn canonical(&self) -> String {
        format!(
            "emporium-ledger-v1|{}|{}|{}|{}|{}|{}|{}|{}|{}",
            self.seq,
            self.transaction_id.hyphenated(),
            self.intent_id.hyphenated(),
            self.movement.as_str(),
            self.account.as_str(),
            self.amount,
            self.currency,
            self.at,
            self.prev_hash
        )
    }

    /// SHA-256 of [`Entry::canonical`], lower-case hex.
    pub fn compute_hash(&self) -> String {
        let digest =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, self.canonical().as_bytes());
        digest
            .as_ref()
            .iter()
            .fold(String::with_capacity(64), |mut hex, b| {
                let _ = write!(hex, "{b:02x}");
                hex
            })
    }
}

/// An intent's balances, from its entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Balances {
    /// Authorized and not yet captured or released.
    pub holds: i64,
    /// Captured and not refunded.
    pub merchant: i64,
}

impl Balances {
    fn plus(self, other: Self) -> Self {
        Self {
            holds: self.holds + other.holds,
            merchant: self.merchant + other.merchant,
        }
    }

    /// The balances `entries` (of one intent) add up to.
    pub fn of<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> Self {
        entries.into_iter().fold(Self::default(), |mut b, e| {
            match e.account {
                Account::Holds => b.holds += e.amount,
                Account::Merchant => b.merchant += e.amount,
                Account::Customer => {}
            }
            b
        })
    }
}

/// The entries `transfer` makes after the chain's head (`head_seq`,
/// `head_hash`), at `at`, given the intent's entries so far: refused if an
/// amount is not positive, a currency is malformed or differs from the
/// intent's, or the account it draws on would go below zero.
pub fn post(
    transfer: &Transfer,
    intent_entries: &[Entry],
    (head_seq, head_hash): (i64, &str),
    at: i64,
) -> Result<[Entry; 2], TransferError> {
    if transfer.amount <= 0 {
        return Err(TransferError::NotPositive);
    }
    let currency_ok =
        transfer.currency.len() == 3 && transfer.currency.bytes().all(|b| b.is_ascii_uppercase());
    if !currency_ok {
        return Err(TransferError::Currency);
    }
    if let Some(e) = intent_entries
        .iter()
        .find(|e| e.currency != transfer.currency)
    {
        return Err(TransferError::CurrencyMismatch(e.currency.clone()));
    }
    let (from, to) = transfer.movement.route();
    let balances = Balances::of(intent_entries);
    let drawn = match from {
        Account::Holds => Some(balances.holds),
        Account::Merchant => Some(balances.merchant),
        Account::Customer => None,
    };
    if let Some(balance) = drawn.filter(|b| *b < transfer.amount) {
        return Err(TransferError::Insufficient {
            account: from.as_str(),
            balance,
            amount: transfer.amount,
        });
    }
    let entry = |seq: i64, account: Account, amount: i64, prev_hash: String| {
        let mut e = Entry {
            seq,
            transaction_id: transfer.transaction_id,
            intent_id: transfer.intent_id,
            movement: transfer.movement,
            account,
            amount,
            currency: transfer.currency.clone(),
            at,
            prev_hash,
            hash: String::new(),
        };
        e.hash = e.compute_hash();
        e
    };
    let first = entry(head_seq + 1, from, -transfer.amount, head_hash.to_owned());
    let second = entry(head_seq + 2, to, transfer.amount, first.hash.clone());
    Ok([first, second])
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub entries: i64,
    pub valid: bool,
    /// The first entry that does not hold, and why.
    pub first_bad_entry: Option<(i64, &'static str)>,
}

/// Recomputes the chain over `entries` (in `seq` order, all of them) and
/// checks every transaction and every intent's balances.
pub fn verify<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> Verification {
    let mut count = 0;
    let mut prev = GENESIS.to_owned();
    // Per transaction: its sum per currency; per intent: balances so far.
    let mut sums: BTreeMap<(Uuid, String), (i64, i64)> = BTreeMap::new();
    let mut balances: BTreeMap<Uuid, Balances> = BTreeMap::new();
    let mut bad = None;
    for e in entries {
        count += 1;
        if bad.is_some() {
            continue;
        }
        let problem = if e.seq != count {
            Some("out of sequence (an entry is missing or moved)")
        } else if e.prev_hash != prev {
            Some("does not follow the entry before it")
        } else if e.hash != e.compute_hash() {
            Some("its content does not match its hash")
        } else {
            let b = balances.entry(e.intent_id).or_default();
            *b = Balances::of([e]).plus(*b);
            let sum = sums
                .entry((e.transaction_id, e.currency.clone()))
                .or_default();
            *sum = (sum.0 + e.amount, e.seq);
            (b.holds < 0 || b.merchant < 0).then_some("takes a balance below zero")
        };
        if let Some(why) = problem {
            bad = Some((e.seq, why));
        }
        prev = e.hash.clone();
    }
    // A transaction whose entries do not sum to zero: named by its last entry.
    if bad.is_none() {
        bad = sums
            .values()
            .filter(|(sum, _)| *sum != 0)
            .map(|(_, last)| (*last, "its transaction does not sum to zero"))
            .min();
    }
    Verification {
        entries: count,
        valid: bad.is_none(),
        first_bad_entry: bad,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn transfer(intent: Uuid, movement: Movement, amount: i64) -> Transfer {
        Transfer::new(intent, movement, amount, "EUR")
    }

    /// Posts every transfer in turn, as the store does.
    fn chain(transfers: &[Transfer]) -> Vec<Entry> {
        let mut all: Vec<Entry> = Vec::new();
        for t in transfers {
            let of_intent: Vec<Entry> = all
                .iter()
                .filter(|e| e.intent_id == t.intent_id)
                .cloned()
                .collect();
            let head = all
                .last()
                .map_or((0, GENESIS.to_owned()), |e| (e.seq, e.hash.clone()));
            let posted = post(t, &of_intent, (head.0, &head.1), 1_000 + head.0).unwrap();
            all.extend(posted);
        }
        all
    }

    #[test]
    fn each_transfer_is_two_entries_that_sum_to_zero_and_chain() {
        let intent = Uuid::now_v7();
        let entries = chain(&[
            transfer(intent, Movement::Authorize, 1000),
            transfer(intent, Movement::Capture, 800),
            transfer(intent, Movement::Void, 200),
            transfer(intent, Movement::Refund, 300),
        ]);
        assert_eq!(entries.len(), 8);
        assert_eq!(entries[0].prev_hash, GENESIS);
        for pair in entries.chunks(2) {
            assert_eq!(pair[0].amount + pair[1].amount, 0);
            assert_eq!(pair[0].transaction_id, pair[1].transaction_id);
        }
        for w in entries.windows(2) {
            assert_eq!(w[1].prev_hash, w[0].hash);
            assert_eq!(w[1].seq, w[0].seq + 1);
        }
        assert_eq!(
            Balances::of(&entries),
            Balances {
                holds: 0,
                merchant: 500
            }
        );
        let v = verify(&entries);
        assert_eq!((v.entries, v.valid, v.first_bad_entry), (8, true, None));
    }

    #[test]
    fn nothing_is_drawn_that_is_not_there() {
        let intent = Uuid::now_v7();
        let entries = chain(&[
            transfer(intent, Movement::Authorize, 1000),
            transfer(intent, Movement::Capture, 1000),
        ]);
        let head = (entries[3].seq, entries[3].hash.as_str());
        let over = post(&transfer(intent, Movement::Refund, 1001), &entries, head, 0);
        assert_eq!(
            over.unwrap_err(),
            TransferError::Insufficient {
                account: "merchant",
                balance: 1000,
                amount: 1001
            }
        );
        let capture_again = post(&transfer(intent, Movement::Capture, 1), &entries, head, 0);
        assert!(matches!(
            capture_again,
            Err(TransferError::Insufficient {
                account: "holds",
                ..
            })
        ));
        for amount in [0, -5, i64::MIN] {
            let t = transfer(intent, Movement::Authorize, amount);
            assert_eq!(
                post(&t, &entries, head, 0).unwrap_err(),
                TransferError::NotPositive
            );
        }
        let mut usd = transfer(intent, Movement::Refund, 1);
        usd.currency = "USD".into();
        assert_eq!(
            post(&usd, &entries, head, 0).unwrap_err(),
            TransferError::CurrencyMismatch("EUR".into())
        );
        usd.currency = "usd".into();
        assert_eq!(
            post(&usd, &entries, head, 0).unwrap_err(),
            TransferError::Currency
        );
    }

    #[test]
    fn any_change_is_found_at_the_entry_it_touches() {
        let intent = Uuid::now_v7();
        let good = chain(&[
            transfer(intent, Movement::Authorize, 1000),
            transfer(intent, Movement::Capture, 1000),
            transfer(intent, Movement::Refund, 400),
        ]);
        let tamper = |change: &dyn Fn(&mut Vec<Entry>)| {
            let mut entries = good.clone();
            change(&mut entries);
            verify(&entries)
        };
        // An amount changed (and its hash not recomputed).
        let v = tamper(&|e| e[4].amount = -10);
        assert_eq!(
            v.first_bad_entry,
            Some((5, "its content does not match its hash"))
        );
        // An amount changed and its own hash recomputed: the next link breaks.
        let v = tamper(&|e| {
            e[2].amount = -1;
            e[2].hash = e[2].compute_hash();
        });
        assert_eq!(
            v.first_bad_entry,
            Some((4, "does not follow the entry before it"))
        );
        // An entry removed.
        let v = tamper(&|e| {
            e.remove(1);
        });
        assert_eq!(
            v.first_bad_entry,
            Some((3, "out of sequence (an entry is missing or moved)"))
        );
        // The last entry removed: the chain holds, the transaction does not.
        let v = tamper(&|e| {
            e.pop();
        });
        assert_eq!(
            v.first_bad_entry,
            Some((5, "its transaction does not sum to zero"))
        );
        assert!(!v.valid);
        assert_eq!(v.entries, 5);
    }

    #[test]
    fn the_encoding_is_fixed() {
        let e = Entry {
            seq: 7,
            transaction_id: Uuid::nil(),
            intent_id: Uuid::max(),
            movement: Movement::Refund,
            account: Account::Merchant,
            amount: -250,
            currency: "EUR".into(),
            at: 1_700_000_000_000,
            prev_hash: GENESIS.into(),
            hash: String::new(),
        };
        assert_eq!(
            e.canonical(),
            format!(
                "emporium-ledger-v1|7|00000000-0000-0000-0000-000000000000|\
                 ffffffff-ffff-ffff-ffff-ffffffffffff|refund|merchant|-250|EUR|1700000000000|{GENESIS}"
            )
        );
        // Lower-case hex of SHA-256 over exactly that text (as `sha256sum` gives it).
        assert_eq!(
            e.compute_hash(),
            "0570f1daa5d3c9bcf74d5f90668f202506982f66cc9ffac2d462971e4964ab69"
        );
    }

    /// A chain whose every link holds but that draws on a balance another
    /// intent holds is still refused, at the entry that goes below zero.
    #[test]
    fn a_balance_below_zero_is_found() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let mut entries = chain(&[transfer(a, Movement::Authorize, 1000)]);
        // `post` trusts the entries it is given: hand it intent A's as B's.
        let head = (entries[1].seq, entries[1].hash.clone());
        let stolen = post(
            &transfer(b, Movement::Capture, 1000),
            &entries,
            (head.0, &head.1),
            9,
        );
        entries.extend(stolen.unwrap());
        let v = verify(&entries);
        assert_eq!(v.first_bad_entry, Some((3, "takes a balance below zero")));
    }
}
