-- No query reads the ledger by key alone: the usage API and the ledger
-- export always name the project (usage_ledger_project_time serves them,
-- with the key as a filter), and spend per key comes from usage_daily.
-- The index only cost every ledger insert a fourth B-tree update.
DROP INDEX usage_ledger_key_time;
