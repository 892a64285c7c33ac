-- The event store: one stream per order, events numbered 1, 2, 3, … without
-- gaps. A writer appends after the sequence number it read; a stale writer's
-- insert meets the primary key and is refused (optimistic concurrency).
CREATE TABLE order_events (
    order_id   UUID   NOT NULL,
    seq        BIGINT NOT NULL CHECK (seq > 0),
    event_type TEXT   NOT NULL,
    data       TEXT   NOT NULL,
    at         BIGINT NOT NULL,
    PRIMARY KEY (order_id, seq)
);

-- Events are never changed or removed.
CREATE FUNCTION order_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'order events are append-only' USING ERRCODE = 'restrict_violation';
END
$$;

CREATE TRIGGER order_events_no_change BEFORE UPDATE OR DELETE ON order_events
    FOR EACH ROW EXECUTE FUNCTION order_events_append_only();

-- The read model: each order as folding its stream gives it, written in the
-- transaction of the append. `version` is the last event folded in.
CREATE TABLE orders (
    id           UUID   PRIMARY KEY,
    customer_id  UUID   NOT NULL,
    status       TEXT   NOT NULL,
    total_amount BIGINT NOT NULL,
    currency     TEXT   NOT NULL,
    version      BIGINT NOT NULL,
    document     TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);

CREATE INDEX orders_by_customer ON orders (customer_id, created_at DESC, id DESC);
CREATE INDEX orders_by_time ON orders (created_at DESC, id DESC);
