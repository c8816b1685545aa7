-- Graph change notifications (issue 17): push_subscriptions gets a second mode, 'graph'.
-- depends: 0020_push_subscriptions 0030_operator_source
--
-- A Graph subscription has no keep-alive and no StatusFrequency: it lives until its
-- expirationDateTime unless renewed (PATCH), so it carries when it expires and when calsync
-- renews it (about 75% of its lifetime, spread per operator). Its clientState, a second
-- secret echoed in every notification, is stored as a sha256 like the URL's secret. Graph
-- has no "Unsubscribe" answer: a subscription calsync no longer wants (superseded, operator
-- disabled, push switched off) is deleted at Graph (DELETE /subscriptions/{id}); cleanup_at
-- says that is still to do. Written only by calsync.store.push.

ALTER TABLE push_subscriptions DROP CONSTRAINT push_subscriptions_mode_check;
ALTER TABLE push_subscriptions ADD CONSTRAINT push_subscriptions_mode_check
    CHECK (mode IN ('push', 'streaming', 'graph'));
-- Graph subscriptions have no StatusFrequency.
ALTER TABLE push_subscriptions ALTER COLUMN status_frequency_minutes DROP NOT NULL;
ALTER TABLE push_subscriptions ADD CONSTRAINT push_subscriptions_frequency_by_mode
    CHECK (mode = 'graph' OR status_frequency_minutes IS NOT NULL);

ALTER TABLE push_subscriptions
    ADD COLUMN client_state_hash    bytea,
    -- Graph's expirationDateTime as Graph answered it (created or renewed)
    ADD COLUMN expires_at           timestamptz,
    -- when the next renewal is due (a spread fraction of the lifetime after the last one)
    ADD COLUMN renew_at             timestamptz,
    -- the sweep has handed the renewal to a worker; not handed out again before this
    ADD COLUMN renew_hold_until     timestamptz,
    -- Graph sent reauthorizationRequired: the next renewal reauthorizes first
    ADD COLUMN reauthorize          boolean NOT NULL DEFAULT false,
    ADD COLUMN renewals             integer NOT NULL DEFAULT 0,
    ADD COLUMN renewed_at           timestamptz,
    ADD COLUMN renew_failures       integer NOT NULL DEFAULT 0,
    -- an ended Graph subscription still to be deleted at Graph (the time of the next attempt)
    ADD COLUMN cleanup_at           timestamptz,
    ADD COLUMN deleted_at           timestamptz,
    ADD COLUMN lifecycle_events     bigint NOT NULL DEFAULT 0,
    ADD COLUMN last_lifecycle_event text,
    ADD COLUMN last_lifecycle_at    timestamptz,
    ADD CONSTRAINT push_subscriptions_graph_client_state CHECK (mode <> 'graph' OR client_state_hash IS NOT NULL);

CREATE INDEX push_subscriptions_graph_renew
    ON push_subscriptions (renew_at) WHERE state = 'active' AND mode = 'graph';
CREATE INDEX push_subscriptions_graph_lapse
    ON push_subscriptions (expires_at) WHERE state = 'active' AND mode = 'graph';
CREATE INDEX push_subscriptions_graph_cleanup
    ON push_subscriptions (cleanup_at) WHERE cleanup_at IS NOT NULL;
