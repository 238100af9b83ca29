-- A key made by another key (delegation): it is bounded by its maker,
-- spends against it and dies with it. NULL for keys made by people, the
-- CLI or admin keys.
ALTER TABLE api_keys ADD COLUMN parent_key_id TEXT REFERENCES api_keys (id);
CREATE INDEX api_keys_parent ON api_keys (parent_key_id);
