-- Push change latency for the console's history (issue 18 over issue 15).
-- depends: 0020_push_subscriptions
--
-- The notification-to-commit latency of each covered notification was only a Prometheus
-- histogram; the console reads Postgres, so the sync that covers a notification also
-- records it here (calsync.store.lifecycle.push_after_finish, same transaction). One row
-- per covered notification episode (not per poll), pruned with ended subscriptions.
CREATE TABLE push_latencies (
    at          timestamptz NOT NULL DEFAULT now(),
    operator_id bigint NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
    seconds     double precision NOT NULL CHECK (seconds >= 0)
);
CREATE INDEX push_latencies_at_idx ON push_latencies (at);
