-- Technical cancels and webhooks.
--
-- An authorization carries the merchant's reference (payments' payment id).
-- Those made before references existed get the nil UUID, which the API
-- refuses from callers, so no cancel can name them.
--
-- A capture the network refuses after accepting it leaves the authorization
-- `capture_failed`, with an operation of that kind in its record.
--
-- SQLite cannot change a CHECK constraint in place, so both tables are
-- rebuilt: copied into new ones that then take the old names. The new
-- operations table refers to the new authorizations table from the start, so
-- dropping the old authorizations leaves no row referring to them (foreign
-- keys are on, and cannot be turned off inside the migration's transaction);
-- renaming the new authorizations table renames the reference with it.
CREATE TABLE sandbox_authorizations_new (
    id         BLOB    PRIMARY KEY,
    token      TEXT    NOT NULL REFERENCES sandbox_tokens (token),
    status     TEXT    NOT NULL CHECK (status IN ('authorized', 'captured', 'voided', 'capture_failed')),
    amount     INTEGER NOT NULL CHECK (amount > 0),
    currency   TEXT    NOT NULL,
    captured   INTEGER NOT NULL CHECK (captured >= 0 AND captured <= amount),
    refunded   INTEGER NOT NULL CHECK (refunded >= 0 AND refunded <= captured),
    created_at INTEGER NOT NULL,
    reference  BLOB    NOT NULL
);
INSERT INTO sandbox_authorizations_new
    (id, token, status, amount, currency, captured, refunded, created_at, reference)
    SELECT id, token, status, amount, currency, captured, refunded, created_at, zeroblob(16)
    FROM sandbox_authorizations;

CREATE TABLE sandbox_operations_new (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    authorization_id BLOB    NOT NULL REFERENCES sandbox_authorizations_new (id),
    kind             TEXT    NOT NULL CHECK (kind IN ('authorize', 'capture', 'void', 'refund', 'capture_failed')),
    amount           INTEGER NOT NULL,
    at               INTEGER NOT NULL
);
INSERT INTO sandbox_operations_new (seq, authorization_id, kind, amount, at)
    SELECT seq, authorization_id, kind, amount, at FROM sandbox_operations;

DROP TABLE sandbox_operations;
DROP TABLE sandbox_authorizations;
ALTER TABLE sandbox_authorizations_new RENAME TO sandbox_authorizations;
ALTER TABLE sandbox_operations_new RENAME TO sandbox_operations;
CREATE INDEX sandbox_operations_by_authorization ON sandbox_operations (authorization_id, seq);
CREATE INDEX sandbox_authorizations_by_reference ON sandbox_authorizations (reference);

-- A cancelled reference, kept for good: any authorize under it is refused.
CREATE TABLE cancelled_references (
    reference    BLOB    PRIMARY KEY,
    cancelled_at INTEGER NOT NULL
);

-- What the sandbox owes the merchant's webhook endpoint: queued with the
-- capture it reports, sent from `due_at` on until the endpoint takes it
-- (`delivered_at`) or the sandbox gives up (`gave_up_at`).
CREATE TABLE notifications (
    id               BLOB    PRIMARY KEY,
    kind             TEXT    NOT NULL CHECK (kind IN ('capture_settled', 'capture_failed')),
    authorization_id BLOB    NOT NULL REFERENCES sandbox_authorizations (id),
    reference        BLOB    NOT NULL,
    amount           INTEGER NOT NULL,
    currency         TEXT    NOT NULL,
    created_at       INTEGER NOT NULL,
    due_at           INTEGER NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    delivered_at     INTEGER,
    gave_up_at       INTEGER
);

CREATE INDEX notifications_due ON notifications (due_at)
    WHERE delivered_at IS NULL AND gave_up_at IS NULL;
