-- Who owns each object an upstream keeps (responses, files, batches): every
-- project shares the operator's upstream credential, so Keyward answers an
-- id only to the project that created it, and answers lists from here.
-- snapshot is the object's last JSON seen (for lists; for a translated
-- response, the Response itself), items a translated response's input items,
-- model the model id the creator asked for (what usage seen later is priced by).
CREATE TABLE owned_objects (
    kind        TEXT    NOT NULL,
    object_id   TEXT    NOT NULL,
    project_id  TEXT    NOT NULL REFERENCES projects (id),
    key_id      TEXT    NOT NULL,
    owner_id    TEXT    NOT NULL,
    upstream    TEXT    NOT NULL,
    model       TEXT,
    created_at  INTEGER NOT NULL,
    purpose     TEXT,
    parent_id   TEXT,
    snapshot    TEXT,
    items       TEXT,
    settled     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, object_id)
);
CREATE INDEX owned_objects_list ON owned_objects (project_id, kind, created_at, object_id);
