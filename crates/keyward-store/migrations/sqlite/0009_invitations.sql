-- Invitations to a project, by email. Only the SHA-256 (hex) of the
-- invitation link's token is kept: a copy of this table cannot be used to
-- join. A link works once (accepted_at is set when it is used) and until
-- expires_at.
CREATE TABLE invitations (
    id           TEXT    NOT NULL PRIMARY KEY,
    token_hash   TEXT    NOT NULL UNIQUE,
    project_id   TEXT    NOT NULL REFERENCES projects (id),
    email        TEXT    NOT NULL,
    role         TEXT    NOT NULL,
    invited_by   TEXT    NOT NULL REFERENCES users (id),
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    accepted_at  INTEGER,
    accepted_by  TEXT    REFERENCES users (id)
);
CREATE INDEX invitations_project ON invitations (project_id, expires_at);
