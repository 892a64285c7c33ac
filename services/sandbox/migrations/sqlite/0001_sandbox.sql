-- What the sandbox provider keeps: tokens (never card numbers), the
-- authorizations made with them, and every money movement it made.
CREATE TABLE sandbox_tokens (
    token      TEXT    PRIMARY KEY,
    behaviour  TEXT    NOT NULL,
    brand      TEXT    NOT NULL,
    last4      TEXT    NOT NULL,
    exp_month  INTEGER NOT NULL,
    exp_year   INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE sandbox_authorizations (
    id         BLOB    PRIMARY KEY,
    token      TEXT    NOT NULL REFERENCES sandbox_tokens (token),
    status     TEXT    NOT NULL CHECK (status IN ('authorized', 'captured', 'voided')),
    amount     INTEGER NOT NULL CHECK (amount > 0),
    currency   TEXT    NOT NULL,
    captured   INTEGER NOT NULL CHECK (captured >= 0 AND captured <= amount),
    refunded   INTEGER NOT NULL CHECK (refunded >= 0 AND refunded <= captured),
    created_at INTEGER NOT NULL
);

CREATE TABLE sandbox_operations (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    authorization_id BLOB    NOT NULL REFERENCES sandbox_authorizations (id),
    kind             TEXT    NOT NULL CHECK (kind IN ('authorize', 'capture', 'void', 'refund')),
    amount           INTEGER NOT NULL,
    at               INTEGER NOT NULL
);

CREATE INDEX sandbox_operations_by_authorization ON sandbox_operations (authorization_id, seq);
