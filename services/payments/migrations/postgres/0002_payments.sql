-- Card tokens: what payments keeps of a card (never its number or CVC).
CREATE TABLE card_tokens (
    token      TEXT   PRIMARY KEY,
    -- The customer who tokenized it while signed in; NULL when anonymous.
    owner_id   UUID,
    brand      TEXT   NOT NULL,
    last4      TEXT   NOT NULL CHECK (last4 ~ '^[0-9]{4}$'),
    exp_month  BIGINT NOT NULL CHECK (exp_month BETWEEN 1 AND 12),
    exp_year   BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

-- One payment intent per order. Balances are not here: they are sums over
-- the ledger.
CREATE TABLE payment_intents (
    id             UUID   PRIMARY KEY,
    order_id       UUID   NOT NULL UNIQUE,
    customer_id    UUID   NOT NULL,
    -- The service client that created it; only it acts on it internally.
    client_id      TEXT   NOT NULL,
    token          TEXT   NOT NULL REFERENCES card_tokens (token),
    amount         BIGINT NOT NULL CHECK (amount > 0),
    currency       TEXT   NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    status         TEXT   NOT NULL CHECK (status IN ('requires_authorization', 'authorized',
        'captured', 'partially_refunded', 'refunded', 'voided', 'failed')),
    failure_reason TEXT   CHECK (failure_reason IN ('card_declined', 'insufficient_funds',
        'provider_error', 'capture_failed')),
    -- The provider's authorization, once it answered.
    provider_id    UUID   UNIQUE,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);

CREATE INDEX payment_intents_by_customer ON payment_intents (customer_id);

-- Every call to the provider, recorded before it is made and settled after:
-- a call whose answer was lost (a crash, a timeout) is pending, and is made
-- again with the same key until the provider gives a definite answer.
CREATE TABLE payment_operations (
    intent_id  UUID   NOT NULL REFERENCES payment_intents (id),
    -- 'authorize', 'capture', 'void', 'cancel', or 'refund:<caller>:<key>'.
    key        TEXT   NOT NULL,
    kind       TEXT   NOT NULL CHECK (kind IN ('authorize', 'capture', 'void', 'cancel', 'refund')),
    amount     BIGINT NOT NULL CHECK (amount >= 0),
    state      TEXT   NOT NULL CHECK (state IN ('pending', 'done', 'refused')),
    attempts   BIGINT NOT NULL DEFAULT 0,
    -- A pending call is not retried in the background before this.
    retry_at   BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (intent_id, key)
);

CREATE INDEX payment_operations_pending ON payment_operations (retry_at) WHERE state = 'pending';

-- What happened to each intent, in order: the `events` of the payment view.
CREATE TABLE payment_history (
    intent_id UUID   NOT NULL REFERENCES payment_intents (id),
    seq       BIGINT NOT NULL,
    kind      TEXT   NOT NULL,
    amount    BIGINT,
    reason    TEXT,
    at        BIGINT NOT NULL,
    PRIMARY KEY (intent_id, seq)
);

-- Provider notifications processed, by their id: a replay changes nothing.
CREATE TABLE webhook_receipts (
    id          UUID   PRIMARY KEY,
    kind        TEXT   NOT NULL,
    received_at BIGINT NOT NULL
);
