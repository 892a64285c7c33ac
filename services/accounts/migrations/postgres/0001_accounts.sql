-- Accounts: users, refresh-token families, signing keys, service clients, login throttling.
-- Times are Unix milliseconds (BIGINT) in both engines so the stores share their SQL.

CREATE TABLE users (
    id            UUID PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    roles         TEXT NOT NULL,
    disabled      BOOLEAN NOT NULL DEFAULT FALSE,
    closed        BOOLEAN NOT NULL DEFAULT FALSE,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

CREATE TABLE refresh_families (
    id         UUID PRIMARY KEY,
    user_id    UUID NOT NULL REFERENCES users (id),
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX refresh_families_user ON refresh_families (user_id);

CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    family_id  UUID NOT NULL REFERENCES refresh_families (id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

CREATE TABLE signing_keys (
    kid          TEXT PRIMARY KEY,
    private_der  BYTEA NOT NULL,
    public_x     TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);

CREATE TABLE service_clients (
    client_id   TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL,
    scopes      TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE login_failures (
    id        BIGSERIAL PRIMARY KEY,
    subject   TEXT NOT NULL,
    failed_at BIGINT NOT NULL
);
CREATE INDEX login_failures_subject ON login_failures (subject, failed_at);
