DROP INDEX IF EXISTS appointments_uid_idx;
ALTER TABLE operators DROP COLUMN source;
