-- The admin console (issue 18): who did what, and indexes that keep the operators page fast at 100,000.
-- depends: 0004_quiet_polls
--
-- Searching "part of an address or a name" is a LIKE '%...%'; pg_trgm's GIN indexes answer
-- it without reading every operator. No index is added to sync_state's hot columns
-- (status, last_success_at): every poll updates them, and each index there would cost
-- every poll an index write; the console counts and sorts those 100,000 rows instead
-- (bench/scenarios/console.py measures it). The partial index on last_error_code holds
-- only failing operators, so healthy polls do not touch it.

CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE INDEX operators_email_trgm_idx ON operators USING gin (lower(email) gin_trgm_ops);
CREATE INDEX operators_name_trgm_idx ON operators USING gin (lower(display_name) gin_trgm_ops);
CREATE INDEX operators_name_sort_idx ON operators (lower(display_name), id);
CREATE INDEX sync_state_error_code_idx ON sync_state (last_error_code) WHERE last_error_code IS NOT NULL;
-- History charts read runs and episodes by time across all operators.
CREATE INDEX sync_runs_started_idx ON sync_runs (started_at);
CREATE INDEX failure_episodes_started_idx ON failure_episodes (started_at);

-- Every state-changing action of the console, with the administrator who did it.
CREATE TABLE console_audit (
    id       bigserial PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT now(),
    actor    text NOT NULL,
    action   text NOT NULL,
    target   text NOT NULL DEFAULT '',
    detail   jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX console_audit_at_idx ON console_audit (at DESC);
