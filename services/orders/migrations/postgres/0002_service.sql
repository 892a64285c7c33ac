-- What the running service keeps beside the event store.

-- The saga under way on an order (`checkout`, `cancel`, `ship`, `refund`;
-- NULL when nothing is), and who drives it until when: a replica takes an
-- unfinished saga by moving `lease_until` past now in one statement, so each
-- saga is driven by one replica at a time. A saga put off after a transient
-- failure has no owner and a `lease_until` in the future: it is taken again
-- after that.
ALTER TABLE orders ADD COLUMN in_progress TEXT;
ALTER TABLE orders ADD COLUMN lease_owner TEXT;
ALTER TABLE orders ADD COLUMN lease_until BIGINT;
CREATE INDEX orders_unfinished ON orders (lease_until) WHERE in_progress IS NOT NULL;
CREATE INDEX orders_by_status ON orders (status, created_at DESC, id DESC);

-- Each customer's cart: one row per product.
CREATE TABLE cart_items (
    customer_id UUID   NOT NULL,
    product_id  UUID   NOT NULL,
    quantity    BIGINT NOT NULL CHECK (quantity BETWEEN 1 AND 100),
    added_at    BIGINT NOT NULL,
    PRIMARY KEY (customer_id, product_id)
);

-- Orders' copy of each customer's name and email, fed by accounts' events
-- and erased when the account is deleted.
CREATE TABLE customers (
    id         UUID   PRIMARY KEY,
    name       TEXT   NOT NULL,
    email      TEXT   NOT NULL,
    updated_at BIGINT NOT NULL
);
