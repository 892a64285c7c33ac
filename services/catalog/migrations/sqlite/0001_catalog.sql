-- Catalog: categories, products (documents), warehouses, stock, reservations and
-- the append-only stock-movement journal. Times are Unix milliseconds.

CREATE TABLE categories (
    id          BLOB PRIMARY KEY,
    parent_id   BLOB REFERENCES categories (id),
    name        TEXT NOT NULL,
    slug        TEXT NOT NULL UNIQUE,
    -- Ids from the root down to this category, '/'-separated and closed: '/a/b/'.
    path        TEXT NOT NULL,
    position    INTEGER NOT NULL DEFAULT 0,
    attributes  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX categories_path ON categories (path);

CREATE TABLE products (
    id              BLOB PRIMARY KEY,
    sku             TEXT NOT NULL UNIQUE,
    name            TEXT NOT NULL,
    description     TEXT NOT NULL,
    price_amount    INTEGER NOT NULL CHECK (price_amount >= 0),
    price_currency  TEXT NOT NULL,
    category_id     BLOB NOT NULL REFERENCES categories (id),
    attributes      TEXT NOT NULL,
    images          TEXT NOT NULL,
    low_stock_below INTEGER NOT NULL DEFAULT 5,
    version         INTEGER NOT NULL,
    deleted_at      INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX products_category ON products (category_id) WHERE deleted_at IS NULL;

CREATE TABLE warehouses (
    id         BLOB PRIMARY KEY,
    code       TEXT NOT NULL UNIQUE,
    name       TEXT NOT NULL,
    address    TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE stock (
    warehouse_id BLOB NOT NULL REFERENCES warehouses (id),
    product_id   BLOB NOT NULL REFERENCES products (id),
    on_hand      INTEGER NOT NULL,
    reserved     INTEGER NOT NULL,
    PRIMARY KEY (product_id, warehouse_id),
    CHECK (reserved >= 0 AND on_hand >= reserved)
);

CREATE TABLE reservations (
    id         BLOB PRIMARY KEY,
    status     TEXT NOT NULL,
    items      TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX reservations_expiring ON reservations (expires_at) WHERE status = 'active';

CREATE TABLE reservation_lines (
    reservation_id BLOB NOT NULL REFERENCES reservations (id),
    warehouse_id   BLOB NOT NULL,
    product_id     BLOB NOT NULL,
    quantity       INTEGER NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (reservation_id, product_id, warehouse_id)
);

CREATE TABLE stock_movements (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    product_id     BLOB NOT NULL,
    warehouse_id   BLOB NOT NULL,
    kind           TEXT NOT NULL,
    delta_on_hand  INTEGER NOT NULL,
    delta_reserved INTEGER NOT NULL,
    on_hand_after  INTEGER NOT NULL,
    reserved_after INTEGER NOT NULL,
    reason         TEXT NOT NULL,
    actor          TEXT NOT NULL,
    reservation_id BLOB,
    at             INTEGER NOT NULL
);
CREATE INDEX stock_movements_product ON stock_movements (product_id, seq);
