DROP TRIGGER operators_sync_state ON operators;
DROP FUNCTION operators_add_sync_state();
DROP TABLE dispatch_ticks, sync_runs, resync_seen, appointment_attendees, appointments, sync_state, operators, settings;
DROP SEQUENCE lease_token_seq;
