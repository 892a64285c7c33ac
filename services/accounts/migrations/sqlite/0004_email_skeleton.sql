-- The UTS #39 skeleton of each address (what it looks like): an address with
-- characters beyond ASCII may not register when its skeleton is another
-- account's (`ɑdmin@…` beside `admin@…`). Filled for older rows at start.
ALTER TABLE users ADD COLUMN email_skeleton TEXT;
CREATE INDEX users_email_skeleton ON users (email_skeleton);
