-- Technical cancels and webhooks.
--
-- An authorization carries the merchant's reference (payments' payment id).
-- Those made before references existed get the nil UUID, which the API
-- refuses from callers, so no cancel can name them.
ALTER TABLE sandbox_authorizations
    ADD COLUMN reference UUID NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000';
ALTER TABLE sandbox_authorizations ALTER COLUMN reference DROP DEFAULT;
CREATE INDEX sandbox_authorizations_by_reference ON sandbox_authorizations (reference);

-- A capture the network refuses after accepting it leaves the authorization
-- `capture_failed`, with an operation of that kind in its record.
ALTER TABLE sandbox_authorizations DROP CONSTRAINT sandbox_authorizations_status_check;
ALTER TABLE sandbox_authorizations ADD CONSTRAINT sandbox_authorizations_status_check
    CHECK (status IN ('authorized', 'captured', 'voided', 'capture_failed'));
ALTER TABLE sandbox_operations DROP CONSTRAINT sandbox_operations_kind_check;
ALTER TABLE sandbox_operations ADD CONSTRAINT sandbox_operations_kind_check
    CHECK (kind IN ('authorize', 'capture', 'void', 'refund', 'capture_failed'));

-- A cancelled reference, kept for good: any authorize under it is refused.
CREATE TABLE cancelled_references (
    reference    UUID   PRIMARY KEY,
    cancelled_at BIGINT NOT NULL
);

-- What the sandbox owes the merchant's webhook endpoint: queued with the
-- capture it reports, sent from `due_at` on until the endpoint takes it
-- (`delivered_at`) or the sandbox gives up (`gave_up_at`).
CREATE TABLE notifications (
    id               UUID   PRIMARY KEY,
    kind             TEXT   NOT NULL CHECK (kind IN ('capture_settled', 'capture_failed')),
    authorization_id UUID   NOT NULL REFERENCES sandbox_authorizations (id),
    reference        UUID   NOT NULL,
    amount           BIGINT NOT NULL,
    currency         TEXT   NOT NULL,
    created_at       BIGINT NOT NULL,
    due_at           BIGINT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    delivered_at     BIGINT,
    gave_up_at       BIGINT
);

CREATE INDEX notifications_due ON notifications (due_at)
    WHERE delivered_at IS NULL AND gave_up_at IS NULL;
