-- Operators with a change notification no sync has covered yet, found without a scan (issue 15).
-- depends: 0021_push_latency
--
-- calsync.push_kick claims every owed operator in one statement (calsync.store.lifecycle.
-- claim_pushed_batch) so that pushed changes run as chunks, like the dispatcher's polls.
-- Owed operators are the few with first_pending_at set (calsync.store.push.hear sets it,
-- the sync that covers it clears it): this index finds them among 100,000 in well under a
-- millisecond, at every kick.
CREATE INDEX push_status_pending ON push_status (operator_id) WHERE first_pending_at IS NOT NULL;
