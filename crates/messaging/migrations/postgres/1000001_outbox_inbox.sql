-- Transactional outbox and idempotent inbox, owned by emporium-messaging.
-- Every producing or consuming service has these tables in its own database.

CREATE TABLE outbox (
    seq          BIGSERIAL PRIMARY KEY,
    event_id     UUID NOT NULL UNIQUE,
    event_type   TEXT NOT NULL,
    subject      TEXT,
    envelope     TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    published_at BIGINT
);
CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at IS NULL;

CREATE TABLE inbox (
    consumer   TEXT NOT NULL,
    event_id   UUID NOT NULL,
    handled_at BIGINT NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
