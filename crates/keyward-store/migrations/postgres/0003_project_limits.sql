-- Project-wide rate limits and monthly budget, on top of each key's own.
ALTER TABLE projects ADD COLUMN rpm_limit BIGINT;
ALTER TABLE projects ADD COLUMN tpm_limit BIGINT;
ALTER TABLE projects ADD COLUMN max_concurrent BIGINT;
ALTER TABLE projects ADD COLUMN monthly_budget_micros BIGINT;
