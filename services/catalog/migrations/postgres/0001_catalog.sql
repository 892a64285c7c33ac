-- Catalog: categories, products (documents), warehouses, stock, reservations and
-- the append-only stock-movement journal. Times are Unix milliseconds.

CREATE TABLE categories (
    id          UUID PRIMARY KEY,
    parent_id   UUID REFERENCES categories (id),
    name        TEXT NOT NULL,
    slug        TEXT NOT NULL UNIQUE,
    -- Ids from the root down to this category, '/'-separated and closed: '/a/b/'.
    path        TEXT NOT NULL,
    position    INTEGER NOT NULL DEFAULT 0,
    attributes  JSONB NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX categories_path ON categories (path text_pattern_ops);

CREATE TABLE products (
    id              UUID PRIMARY KEY,
    sku             TEXT NOT NULL UNIQUE,
    name            TEXT NOT NULL,
    description     TEXT NOT NULL,
    price_amount    BIGINT NOT NULL CHECK (price_amount >= 0),
    price_currency  TEXT NOT NULL,
    category_id     UUID NOT NULL REFERENCES categories (id),
    attributes      JSONB NOT NULL,
    images          JSONB NOT NULL,
    low_stock_below BIGINT NOT NULL DEFAULT 5,
    version         BIGINT NOT NULL,
    deleted_at      BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX products_category ON products (category_id) WHERE deleted_at IS NULL;

CREATE TABLE warehouses (
    id         UUID PRIMARY KEY,
    code       TEXT NOT NULL UNIQUE,
    name       TEXT NOT NULL,
    address    JSONB NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE stock (
    warehouse_id UUID NOT NULL REFERENCES warehouses (id),
    product_id   UUID NOT NULL REFERENCES products (id),
    on_hand      BIGINT NOT NULL,
    reserved     BIGINT NOT NULL,
    PRIMARY KEY (product_id, warehouse_id),
    CHECK (reserved >= 0 AND on_hand >= reserved)
);

CREATE TABLE reservations (
    id         UUID PRIMARY KEY,
    status     TEXT NOT NULL,
    items      JSONB NOT NULL,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX reservations_expiring ON reservations (expires_at) WHERE status = 'active';

CREATE TABLE reservation_lines (
    reservation_id UUID NOT NULL REFERENCES reservations (id),
    warehouse_id   UUID NOT NULL,
    product_id     UUID NOT NULL,
    quantity       BIGINT NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (reservation_id, product_id, warehouse_id)
);

CREATE TABLE stock_movements (
    seq            BIGSERIAL PRIMARY KEY,
    product_id     UUID NOT NULL,
    warehouse_id   UUID NOT NULL,
    kind           TEXT NOT NULL,
    delta_on_hand  BIGINT NOT NULL,
    delta_reserved BIGINT NOT NULL,
    on_hand_after  BIGINT NOT NULL,
    reserved_after BIGINT NOT NULL,
    reason         TEXT NOT NULL,
    actor          TEXT NOT NULL,
    reservation_id UUID,
    at             BIGINT NOT NULL
);
CREATE INDEX stock_movements_product ON stock_movements (product_id, seq);
