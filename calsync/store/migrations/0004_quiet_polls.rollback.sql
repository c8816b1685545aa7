ALTER TABLE sync_state DROP COLUMN polls_total;
