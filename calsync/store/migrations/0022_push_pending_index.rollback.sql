DROP INDEX push_status_pending;
