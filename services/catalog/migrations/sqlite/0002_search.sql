-- Full-text search (FTS5, ranked with bm25), kept in step with products by triggers.
CREATE VIRTUAL TABLE products_fts USING fts5(name, description, content='products', content_rowid='rowid');
INSERT INTO products_fts (rowid, name, description) SELECT rowid, name, description FROM products;
CREATE TRIGGER products_fts_insert AFTER INSERT ON products BEGIN
    INSERT INTO products_fts (rowid, name, description) VALUES (new.rowid, new.name, new.description);
END;
CREATE TRIGGER products_fts_delete AFTER DELETE ON products BEGIN
    INSERT INTO products_fts (products_fts, rowid, name, description) VALUES ('delete', old.rowid, old.name, old.description);
END;
CREATE TRIGGER products_fts_update AFTER UPDATE OF name, description ON products BEGIN
    INSERT INTO products_fts (products_fts, rowid, name, description) VALUES ('delete', old.rowid, old.name, old.description);
    INSERT INTO products_fts (rowid, name, description) VALUES (new.rowid, new.name, new.description);
END;
CREATE INDEX products_price ON products (price_amount) WHERE deleted_at IS NULL;
