DELETE FROM push_subscriptions WHERE mode = 'graph';
DROP INDEX IF EXISTS push_subscriptions_graph_cleanup;
DROP INDEX IF EXISTS push_subscriptions_graph_lapse;
DROP INDEX IF EXISTS push_subscriptions_graph_renew;
ALTER TABLE push_subscriptions
    DROP CONSTRAINT push_subscriptions_graph_client_state,
    DROP COLUMN client_state_hash,
    DROP COLUMN expires_at,
    DROP COLUMN renew_at,
    DROP COLUMN renew_hold_until,
    DROP COLUMN reauthorize,
    DROP COLUMN renewals,
    DROP COLUMN renewed_at,
    DROP COLUMN renew_failures,
    DROP COLUMN cleanup_at,
    DROP COLUMN deleted_at,
    DROP COLUMN lifecycle_events,
    DROP COLUMN last_lifecycle_event,
    DROP COLUMN last_lifecycle_at;
ALTER TABLE push_subscriptions DROP CONSTRAINT push_subscriptions_frequency_by_mode;
ALTER TABLE push_subscriptions ALTER COLUMN status_frequency_minutes SET NOT NULL;
ALTER TABLE push_subscriptions DROP CONSTRAINT push_subscriptions_mode_check;
ALTER TABLE push_subscriptions ADD CONSTRAINT push_subscriptions_mode_check CHECK (mode IN ('push', 'streaming'));
