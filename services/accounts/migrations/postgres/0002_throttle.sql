-- Throttling by atomic slots: an attempt takes its slot (one upsert) before the
-- password is checked, so a burst of concurrent attempts cannot pass the limit.
-- Replaces the failure log, which was checked first and written afterwards.
CREATE TABLE throttle_slots (
    subject      TEXT PRIMARY KEY,
    window_start BIGINT NOT NULL,
    taken        BIGINT NOT NULL
);
DROP TABLE login_failures;
