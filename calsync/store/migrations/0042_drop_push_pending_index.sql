-- Drop the index of pending push operators (issue 15: CPU per pushed change).
-- depends: 0041_push_keepalive_hot
--
-- 0022 made it for the kick that claimed every owed operator at once. A kick now claims only
-- the operator it names, by key (calsync.store.lifecycle.claim_pushed), and nothing reads
-- the index. It still cost every change notification that marks its operator pending, and
-- every sync that clears the mark: a column in an index's predicate makes the update write
-- new index entries instead of a heap-only (HOT) update in place.
DROP INDEX IF EXISTS push_status_pending;
