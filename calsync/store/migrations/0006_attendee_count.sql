-- Thousands of attendees (issue 14): positions beyond 32,767 and a count of what was not stored.
-- depends: 0005_refused_items
--
-- appointment_attendees.position was a smallint: a meeting with 33,000 attendees failed its
-- whole batch with NumericValueOutOfRange. calsync now stores the first 1,000 attendees of an
-- item (calsync.sync.model.STORED_ATTENDEES) and keeps how many Exchange listed in
-- appointments.attendees_total (NULL on rows written before this migration).
ALTER TABLE appointment_attendees ALTER COLUMN position TYPE integer;
ALTER TABLE appointments ADD COLUMN attendees_total integer
    CONSTRAINT appointments_attendees_total_nonnegative CHECK (attendees_total >= 0);
