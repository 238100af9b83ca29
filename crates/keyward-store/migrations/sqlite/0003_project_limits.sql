-- Project-wide rate limits and monthly budget, on top of each key's own.
ALTER TABLE projects ADD COLUMN rpm_limit INTEGER;
ALTER TABLE projects ADD COLUMN tpm_limit INTEGER;
ALTER TABLE projects ADD COLUMN max_concurrent INTEGER;
ALTER TABLE projects ADD COLUMN monthly_budget_micros INTEGER;
