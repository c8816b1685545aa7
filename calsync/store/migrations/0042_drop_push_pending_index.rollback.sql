CREATE INDEX push_status_pending ON push_status (operator_id) WHERE first_pending_at IS NOT NULL;
