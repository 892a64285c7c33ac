-- Transactional outbox and idempotent inbox, owned by emporium-messaging.
-- Every producing or consuming service has these tables in its own database.

CREATE TABLE outbox (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id     BLOB NOT NULL UNIQUE,
    event_type   TEXT NOT NULL,
    subject      TEXT,
    envelope     TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    published_at INTEGER
);
CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at IS NULL;

CREATE TABLE inbox (
    consumer   TEXT NOT NULL,
    event_id   BLOB NOT NULL,
    handled_at INTEGER NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
