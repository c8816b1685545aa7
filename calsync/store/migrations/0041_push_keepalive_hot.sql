-- Keep-alives as heap-only-tuple (HOT) updates (issue 15: idle cost of push).
-- depends: 0040_graph_subscriptions
--
-- Every notification updates its subscription's last_heard_at, watermark and counters. While
-- last_heard_at was indexed, each of those updates wrote a new entry into every index of the
-- table; with no indexed column changed and room left on the page, Postgres updates the row
-- in place of its page (HOT). The index served no query: the dead-subscription sweep compares
-- COALESCE(last_heard_at, subscribed_at), which a plain index on last_heard_at cannot answer,
-- and a sequential pass over the live subscriptions every sweep costs far less than the index
-- did on every keep-alive. Measured in bench/scenarios/push.py's listener figures: Postgres CPU
-- per keep-alive 0.189 -> 0.119 ms, per change notification 0.35 -> 0.14 ms.
DROP INDEX push_subscriptions_live_heard;
-- Room on every page for the updated versions of its rows (applies to pages written from now on).
ALTER TABLE push_subscriptions SET (fillfactor = 70);
