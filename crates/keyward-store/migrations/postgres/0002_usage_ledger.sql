-- One row per gateway request, written in batches off the request path.
CREATE TABLE usage_ledger (
    seq               BIGSERIAL PRIMARY KEY,
    request_id        TEXT    NOT NULL UNIQUE,
    key_id            TEXT    NOT NULL,
    project_id        TEXT    NOT NULL,
    user_id           TEXT    NOT NULL,
    model             TEXT    NOT NULL,
    endpoint          TEXT    NOT NULL,
    prompt_tokens     BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    cost_micros       BIGINT NOT NULL,
    status            BIGINT NOT NULL,
    latency_ms        BIGINT NOT NULL,
    created_at        BIGINT NOT NULL
);
CREATE INDEX usage_ledger_project_time ON usage_ledger (project_id, created_at);
CREATE INDEX usage_ledger_key_time ON usage_ledger (key_id, created_at);

-- Daily roll-up per project, key and model, kept in step with the ledger
-- in the same transaction. `day` is the Unix second of 00:00 UTC.
CREATE TABLE usage_daily (
    day               BIGINT NOT NULL,
    project_id        TEXT    NOT NULL,
    key_id            TEXT    NOT NULL,
    model             TEXT    NOT NULL,
    requests          BIGINT NOT NULL,
    errors            BIGINT NOT NULL,
    prompt_tokens     BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    cost_micros       BIGINT NOT NULL,
    PRIMARY KEY (day, project_id, key_id, model)
);
CREATE INDEX usage_daily_key ON usage_daily (key_id, day);
