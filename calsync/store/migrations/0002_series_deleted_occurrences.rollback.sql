-- depends: 0001_initial
ALTER TABLE appointments DROP CONSTRAINT appointments_deleted_occurrences_series;
ALTER TABLE appointments DROP COLUMN deleted_occurrences;
