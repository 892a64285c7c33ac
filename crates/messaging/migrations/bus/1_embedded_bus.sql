-- The embedded bus of `emporium up`: durable subscriptions and one delivery row
-- per (consumer, event) until it is handled or dead-lettered.

CREATE TABLE bus_subscriptions (
    consumer   TEXT NOT NULL,
    event_type TEXT NOT NULL,
    PRIMARY KEY (consumer, event_type)
);

CREATE TABLE bus_deliveries (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    consumer        TEXT NOT NULL,
    event_id        BLOB NOT NULL,
    event_type      TEXT NOT NULL,
    envelope        TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    dead            INTEGER NOT NULL DEFAULT 0,
    UNIQUE (consumer, event_id)
);
CREATE INDEX bus_deliveries_due ON bus_deliveries (consumer, dead, next_attempt_at, seq);
