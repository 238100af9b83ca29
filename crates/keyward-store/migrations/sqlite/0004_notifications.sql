-- Notices to account owners, e.g. a key revoked because it was found exposed.
CREATE TABLE notifications (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT    NOT NULL UNIQUE,
    user_id    TEXT    NOT NULL REFERENCES users (id),
    kind       TEXT    NOT NULL,
    key_id     TEXT,
    project_id TEXT,
    message    TEXT    NOT NULL,
    details    TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    read_at    INTEGER
);
CREATE INDEX notifications_user ON notifications (user_id, seq);
