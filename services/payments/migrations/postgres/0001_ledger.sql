-- The ledger: append-only entries, each chained to the one before by hash.
CREATE TABLE ledger_entries (
    seq            BIGINT PRIMARY KEY CHECK (seq > 0),
    transaction_id UUID   NOT NULL,
    intent_id      UUID   NOT NULL,
    movement       TEXT   NOT NULL CHECK (movement IN ('authorize', 'capture', 'void', 'refund', 'reversal')),
    account        TEXT   NOT NULL CHECK (account IN ('customer', 'holds', 'merchant')),
    amount         BIGINT NOT NULL CHECK (amount <> 0),
    currency       TEXT   NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    at             BIGINT NOT NULL,
    prev_hash      TEXT   NOT NULL,
    hash           TEXT   NOT NULL UNIQUE
);

CREATE INDEX ledger_entries_by_intent ON ledger_entries (intent_id, seq);

-- The chain's head: one row, locked by every append, so appends take turns
-- and the chain never forks.
CREATE TABLE ledger_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  BIGINT  NOT NULL,
    hash TEXT    NOT NULL
);

INSERT INTO ledger_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

-- Entries are never changed or removed, whoever asks.
CREATE FUNCTION ledger_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger entries are append-only' USING ERRCODE = 'restrict_violation';
END
$$;

CREATE TRIGGER ledger_entries_no_change BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_entries_append_only();

CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_append_only();
