-- A counter raised by every change that must end the user's tokens at once
-- (roles, disabling, closing, a new password). Access tokens carry it (`gen`);
-- the other services refuse tokens of an older generation once they hear of
-- the change.
ALTER TABLE users ADD COLUMN token_generation BIGINT NOT NULL DEFAULT 0;
