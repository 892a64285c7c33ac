-- The ledger: append-only entries, each chained to the one before by hash.
CREATE TABLE ledger_entries (
    seq            INTEGER PRIMARY KEY CHECK (seq > 0),
    transaction_id BLOB    NOT NULL,
    intent_id      BLOB    NOT NULL,
    movement       TEXT    NOT NULL CHECK (movement IN ('authorize', 'capture', 'void', 'refund', 'reversal')),
    account        TEXT    NOT NULL CHECK (account IN ('customer', 'holds', 'merchant')),
    amount         INTEGER NOT NULL CHECK (amount <> 0),
    currency       TEXT    NOT NULL CHECK (length(currency) = 3 AND currency = upper(currency)),
    at             INTEGER NOT NULL,
    prev_hash      TEXT    NOT NULL,
    hash           TEXT    NOT NULL UNIQUE
);

CREATE INDEX ledger_entries_by_intent ON ledger_entries (intent_id, seq);

-- The chain's head: one row, written by every append (SQLite's write lock
-- already makes appends take turns).
CREATE TABLE ledger_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash TEXT    NOT NULL
);

INSERT INTO ledger_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

-- Entries are never changed or removed.
CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE ON ledger_entries
BEGIN
    SELECT RAISE(ABORT, 'ledger entries are append-only');
END;

CREATE TRIGGER ledger_entries_no_delete BEFORE DELETE ON ledger_entries
BEGIN
    SELECT RAISE(ABORT, 'ledger entries are append-only');
END;
