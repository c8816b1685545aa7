-- Quiet polls (issue 6): an incremental poll that finds nothing is counted, not recorded.
-- depends: 0002_series_deleted_occurrences 0003_failure_notifications
--
-- 100,000 mailboxes on a five-minute cycle are 28.8 million polls a day, nearly all of
-- them empty; one sync_runs row each would make run history the largest table in the
-- database and its inserts the largest part of a poll's cost. A poll that finds no change
-- now only advances sync_state (cursor, last_success_at, next_poll_at) and this counter;
-- runs that write something, fail or resync keep their sync_runs row.
ALTER TABLE sync_state ADD COLUMN polls_total bigint NOT NULL DEFAULT 0;
