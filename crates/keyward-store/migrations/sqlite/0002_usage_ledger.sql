-- One row per gateway request, written in batches off the request path.
CREATE TABLE usage_ledger (
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id        TEXT    NOT NULL UNIQUE,
    key_id            TEXT    NOT NULL,
    project_id        TEXT    NOT NULL,
    user_id           TEXT    NOT NULL,
    model             TEXT    NOT NULL,
    endpoint          TEXT    NOT NULL,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cost_micros       INTEGER NOT NULL,
    status            INTEGER NOT NULL,
    latency_ms        INTEGER NOT NULL,
    created_at        INTEGER NOT NULL
);
CREATE INDEX usage_ledger_project_time ON usage_ledger (project_id, created_at);
CREATE INDEX usage_ledger_key_time ON usage_ledger (key_id, created_at);

-- Daily roll-up per project, key and model, kept in step with the ledger
-- in the same transaction. `day` is the Unix second of 00:00 UTC.
CREATE TABLE usage_daily (
    day               INTEGER NOT NULL,
    project_id        TEXT    NOT NULL,
    key_id            TEXT    NOT NULL,
    model             TEXT    NOT NULL,
    requests          INTEGER NOT NULL,
    errors            INTEGER NOT NULL,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cost_micros       INTEGER NOT NULL,
    PRIMARY KEY (day, project_id, key_id, model)
);
CREATE INDEX usage_daily_key ON usage_daily (key_id, day);
