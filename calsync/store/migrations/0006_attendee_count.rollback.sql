ALTER TABLE appointments DROP COLUMN attendees_total;
ALTER TABLE appointment_attendees ALTER COLUMN position TYPE smallint;
