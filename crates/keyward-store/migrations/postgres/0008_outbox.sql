-- Notices to send beyond the dashboard (email, webhook): one row per
-- channel, written in the transaction that caused the notice and kept until
-- it is delivered, so neither a restart nor an unreachable receiver loses
-- one. A process delivering a row holds it until `lease_until`, so replicas
-- sharing the database never send one notice twice at once. `payload` is
-- the notice (recipient, message, details), never a secret.
CREATE TABLE outbox (
    id              BIGSERIAL PRIMARY KEY,
    channel         TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    attempts        BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at BIGINT  NOT NULL,
    lease_until     BIGINT,
    last_error      TEXT,
    delivered_at    BIGINT,
    given_up_at     BIGINT
);
CREATE INDEX outbox_due ON outbox (next_attempt_at)
    WHERE delivered_at IS NULL AND given_up_at IS NULL;
