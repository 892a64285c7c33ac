-- Reservations belong to the service client that made them (its token's `sub`):
-- only it may read, release or commit one. Existing reservations take their
-- owner from the journal ('service:<client>' on their reserve movements);
-- any left without one keep '' and no client can act on them.
ALTER TABLE reservations ADD COLUMN client_id TEXT NOT NULL DEFAULT '';
UPDATE reservations SET client_id = substr(m.actor, 9)
    FROM stock_movements m
    WHERE m.reservation_id = reservations.id AND m.kind = 'reserve' AND m.actor LIKE 'service:%';
