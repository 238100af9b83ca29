-- Notices to account owners, e.g. a key revoked because it was found exposed.
CREATE TABLE notifications (
    seq        BIGSERIAL PRIMARY KEY,
    id         TEXT    NOT NULL UNIQUE,
    user_id    TEXT    NOT NULL REFERENCES users (id),
    kind       TEXT    NOT NULL,
    key_id     TEXT,
    project_id TEXT,
    message    TEXT    NOT NULL,
    details    TEXT    NOT NULL,
    created_at BIGINT NOT NULL,
    read_at    BIGINT
);
CREATE INDEX notifications_user ON notifications (user_id, seq);
