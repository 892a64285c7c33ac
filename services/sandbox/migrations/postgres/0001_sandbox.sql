-- What the sandbox provider keeps: tokens (never card numbers), the
-- authorizations made with them, and every money movement it made.
CREATE TABLE sandbox_tokens (
    token      TEXT    PRIMARY KEY,
    behaviour  TEXT    NOT NULL,
    brand      TEXT    NOT NULL,
    last4      TEXT    NOT NULL,
    exp_month  BIGINT  NOT NULL,
    exp_year   BIGINT  NOT NULL,
    created_at BIGINT  NOT NULL
);

CREATE TABLE sandbox_authorizations (
    id         UUID    PRIMARY KEY,
    token      TEXT    NOT NULL REFERENCES sandbox_tokens (token),
    status     TEXT    NOT NULL CHECK (status IN ('authorized', 'captured', 'voided')),
    amount     BIGINT  NOT NULL CHECK (amount > 0),
    currency   TEXT    NOT NULL,
    captured   BIGINT  NOT NULL CHECK (captured >= 0 AND captured <= amount),
    refunded   BIGINT  NOT NULL CHECK (refunded >= 0 AND refunded <= captured),
    created_at BIGINT  NOT NULL
);

CREATE TABLE sandbox_operations (
    seq              BIGSERIAL PRIMARY KEY,
    authorization_id UUID   NOT NULL REFERENCES sandbox_authorizations (id),
    kind             TEXT   NOT NULL CHECK (kind IN ('authorize', 'capture', 'void', 'refund')),
    amount           BIGINT NOT NULL,
    at               BIGINT NOT NULL
);

CREATE INDEX sandbox_operations_by_authorization ON sandbox_operations (authorization_id, seq);
