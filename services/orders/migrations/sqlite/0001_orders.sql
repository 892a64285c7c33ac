-- The event store: one stream per order, events numbered 1, 2, 3, … without
-- gaps. A writer appends after the sequence number it read; a stale writer's
-- insert meets the primary key and is refused (optimistic concurrency).
CREATE TABLE order_events (
    order_id   BLOB    NOT NULL,
    seq        INTEGER NOT NULL CHECK (seq > 0),
    event_type TEXT    NOT NULL,
    data       TEXT    NOT NULL,
    at         INTEGER NOT NULL,
    PRIMARY KEY (order_id, seq)
);

-- Events are never changed or removed.
CREATE TRIGGER order_events_no_update BEFORE UPDATE ON order_events
BEGIN
    SELECT RAISE(ABORT, 'order events are append-only');
END;

CREATE TRIGGER order_events_no_delete BEFORE DELETE ON order_events
BEGIN
    SELECT RAISE(ABORT, 'order events are append-only');
END;

-- The read model: each order as folding its stream gives it, written in the
-- transaction of the append. `version` is the last event folded in.
CREATE TABLE orders (
    id           BLOB    PRIMARY KEY,
    customer_id  BLOB    NOT NULL,
    status       TEXT    NOT NULL,
    total_amount INTEGER NOT NULL,
    currency     TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    document     TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);

CREATE INDEX orders_by_customer ON orders (customer_id, created_at DESC, id DESC);
CREATE INDEX orders_by_time ON orders (created_at DESC, id DESC);
