-- Push notifications (issue 15): subscriptions per operator and per-operator push health.
-- depends: 0004_quiet_polls
--
-- One row per subscription ever made (pruned some days after it ended), so that the
-- listener can tell a superseded or ended subscription (answer Unsubscribe: a push
-- subscription has no other way to end) from a forged one (no row has its secret).
-- Written only by calsync.store.push; sync_state is never written here.

CREATE TABLE push_subscriptions (
    id                        bigserial PRIMARY KEY,
    operator_id               bigint NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
    -- 'push': Exchange POSTs to the listener. 'streaming' (GetStreamingEvents) is room for
    -- a second mode where Exchange cannot reach a listener; nothing creates it yet.
    mode                      text NOT NULL DEFAULT 'push' CHECK (mode IN ('push', 'streaming')),
    -- Exchange's id; NULL between inserting the row and Subscribe's answer.
    subscription_id           text,
    -- sha256 of the secret carried in the callback URL's last path segment; the secret
    -- itself is never stored.
    secret_hash               bytea NOT NULL,
    base_url                  text NOT NULL,
    email                     text NOT NULL,
    status_frequency_minutes  integer NOT NULL CHECK (status_frequency_minutes BETWEEN 1 AND 1440),
    state                     text NOT NULL DEFAULT 'subscribing'
                              CHECK (state IN ('subscribing', 'active', 'superseded', 'dead', 'ended', 'failed')),
    watermark                 text,
    created_at                timestamptz NOT NULL DEFAULT now(),
    subscribed_at             timestamptz,
    last_heard_at             timestamptz,
    ended_at                  timestamptz,
    end_reason                text,
    notifications             bigint NOT NULL DEFAULT 0,
    events                    bigint NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX push_subscriptions_secret_key ON push_subscriptions (secret_hash);
-- At most one active subscription per operator, and at most one being made (it replaces
-- the active one once Exchange has answered).
CREATE UNIQUE INDEX push_subscriptions_one_active ON push_subscriptions (operator_id) WHERE state = 'active';
CREATE UNIQUE INDEX push_subscriptions_one_subscribing
    ON push_subscriptions (operator_id) WHERE state = 'subscribing';
CREATE INDEX push_subscriptions_live_heard
    ON push_subscriptions (last_heard_at) WHERE state IN ('subscribing', 'active');

-- Per operator: the newest change notification (a sync claimed before it is owed), push
-- health across re-subscriptions (one failure email per episode), and the back-off of a
-- failing Subscribe.
CREATE TABLE push_status (
    operator_id        bigint PRIMARY KEY REFERENCES operators (id) ON DELETE CASCADE,
    -- newest change notification, and the oldest one no sync has covered yet (latency metric)
    last_event_at      timestamptz,
    first_pending_at   timestamptz,
    dead_since         timestamptz,
    dead_notified_at   timestamptz,
    subscribe_attempts integer NOT NULL DEFAULT 0,
    next_subscribe_at  timestamptz,
    last_error         text
);
