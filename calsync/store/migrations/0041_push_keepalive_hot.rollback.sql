ALTER TABLE push_subscriptions RESET (fillfactor);
CREATE INDEX push_subscriptions_live_heard
    ON push_subscriptions (last_heard_at) WHERE state IN ('subscribing', 'active');
