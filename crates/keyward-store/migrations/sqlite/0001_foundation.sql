-- Accounts, projects, keys and the audit log. Times are Unix seconds,
-- money is integer micro-dollars. Secrets are stored only as SHA-256 hashes.
CREATE TABLE users (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT    NOT NULL UNIQUE,
    email         TEXT    NOT NULL UNIQUE,
    name          TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    role          TEXT    NOT NULL,
    created_at    INTEGER NOT NULL
);

CREATE TABLE projects (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT    NOT NULL UNIQUE,
    name        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    archived_at INTEGER
);

CREATE TABLE project_members (
    project_id TEXT    NOT NULL REFERENCES projects (id),
    user_id    TEXT    NOT NULL REFERENCES users (id),
    role       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (project_id, user_id)
);
CREATE INDEX project_members_user ON project_members (user_id);

CREATE TABLE api_keys (
    seq                   INTEGER PRIMARY KEY AUTOINCREMENT,
    id                    TEXT    NOT NULL UNIQUE,
    kind                  TEXT    NOT NULL,
    project_id            TEXT REFERENCES projects (id),
    owner_id              TEXT    NOT NULL REFERENCES users (id),
    created_by            TEXT    NOT NULL,
    name                  TEXT    NOT NULL,
    redacted_value        TEXT    NOT NULL,
    permissions           TEXT    NOT NULL,
    allowed_models        TEXT,
    allowed_ips           TEXT,
    rpm_limit             INTEGER,
    tpm_limit             INTEGER,
    max_concurrent        INTEGER,
    monthly_budget_micros INTEGER,
    created_at            INTEGER NOT NULL,
    last_used_at          INTEGER,
    expires_at            INTEGER,
    revoked_at            INTEGER,
    revoked_by            TEXT,
    revoke_reason         TEXT,
    revoke_note           TEXT
);
CREATE INDEX api_keys_project ON api_keys (project_id, seq);
CREATE INDEX api_keys_owner ON api_keys (owner_id, kind, seq);
CREATE INDEX api_keys_expiry ON api_keys (expires_at) WHERE revoked_at IS NULL AND expires_at IS NOT NULL;

-- One row per live secret of a key: normally one, two during a rotation's
-- grace period. `hash` is SHA-256 of the whole key string.
CREATE TABLE api_key_secrets (
    hash       BLOB    NOT NULL PRIMARY KEY,
    key_id     TEXT    NOT NULL REFERENCES api_keys (id),
    created_at INTEGER NOT NULL,
    expires_at INTEGER
) WITHOUT ROWID;
CREATE INDEX api_key_secrets_key ON api_key_secrets (key_id);

CREATE TABLE audit_log (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT    NOT NULL UNIQUE,
    actor_type  TEXT    NOT NULL,
    actor_id    TEXT,
    action      TEXT    NOT NULL,
    target_type TEXT    NOT NULL,
    target_id   TEXT    NOT NULL,
    project_id  TEXT,
    owner_id    TEXT,
    details     TEXT    NOT NULL,
    source_ip   TEXT,
    created_at  INTEGER NOT NULL
);
CREATE INDEX audit_log_project ON audit_log (project_id, seq);
CREATE INDEX audit_log_owner ON audit_log (owner_id, seq);
