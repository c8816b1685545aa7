-- The admin console (issue 18): who did what, and indexes that keep the operators page fast at 100,000.
-- depends: 0004_quiet_polls
--
-- Searching "part of an address or a name" is a LIKE '%...%'; pg_trgm's GIN indexes answer
-- it without reading every operator. No index is added to sync_state's hot columns
-- (status, last_success_at) as a whole: every poll updates the row (next_poll_at is
-- indexed, so no update is HOT), and each full index there would cost every poll one more
-- index write. The two partial indexes below hold only operators that are not 'active' or
-- that have an error, so a healthy poll writes no entry into them; they make filtering by
-- any other status, or by error code, read only those rows (bench/scenarios/console.py).

CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE INDEX operators_email_trgm_idx ON operators USING gin (lower(email) gin_trgm_ops);
CREATE INDEX operators_name_trgm_idx ON operators USING gin (lower(display_name) gin_trgm_ops);
CREATE INDEX operators_name_sort_idx ON operators (lower(display_name), id);
CREATE INDEX sync_state_not_active_idx ON sync_state (status, operator_id) WHERE status <> 'active';
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
