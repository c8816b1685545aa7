-- Series masters keep the original starts of their deleted occurrences, so the daily horizon
-- roll (calsync.horizon) can add the occurrences that enter the horizon without asking
-- Exchange and without bringing a deleted one back. NULL on every other row.
-- depends: 0001_initial

ALTER TABLE appointments ADD COLUMN deleted_occurrences timestamptz[];
ALTER TABLE appointments ADD CONSTRAINT appointments_deleted_occurrences_series
    CHECK (deleted_occurrences IS NULL OR kind = 'series');
