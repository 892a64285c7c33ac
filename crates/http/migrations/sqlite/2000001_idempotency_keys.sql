-- Idempotency keys, owned by emporium-http (`idempotency` module): one row per
-- (caller, key) while its request runs (`in_flight`, leased until
-- `locked_until`) and then with the response to replay (`done`). Times are
-- milliseconds since the Unix epoch from the service's clock.

CREATE TABLE idempotency_keys (
    principal        TEXT NOT NULL,
    key              TEXT NOT NULL,
    fingerprint      TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('in_flight', 'done')),
    locked_until     INTEGER NOT NULL,
    response_status  INTEGER,
    response_headers TEXT,
    response_body    BLOB,
    created_at       INTEGER NOT NULL,
    PRIMARY KEY (principal, key)
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
