-- Per-operator calendar source (issue 16): NULL follows the deployment's `source` setting.
-- depends: 0004_quiet_polls
--
-- A switch of source resyncs the operator; rows are matched by iCalendar UID and original
-- start so that they keep their ids (appointments_uid_idx serves that match).
ALTER TABLE operators ADD COLUMN source text CHECK (source IN ('ews', 'graph'));
CREATE INDEX appointments_uid_idx ON appointments (operator_id, uid, original_start) WHERE uid IS NOT NULL;
