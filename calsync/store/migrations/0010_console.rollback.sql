DROP TABLE console_audit;
DROP INDEX failure_episodes_started_idx;
DROP INDEX sync_runs_started_idx;
DROP INDEX sync_state_error_code_idx;
DROP INDEX sync_state_not_active_idx;
DROP INDEX operators_name_sort_idx;
DROP INDEX operators_name_trgm_idx;
DROP INDEX operators_email_trgm_idx;
