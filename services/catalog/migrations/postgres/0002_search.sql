-- Full-text search: name weighs more than description.
ALTER TABLE products ADD COLUMN search tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('english', name), 'A') || setweight(to_tsvector('english', description), 'B')
) STORED;
CREATE INDEX products_search ON products USING GIN (search);
CREATE INDEX products_attributes ON products USING GIN (attributes jsonb_path_ops);
CREATE INDEX products_price ON products (price_amount) WHERE deleted_at IS NULL;
