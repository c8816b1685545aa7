-- Back to uniqueness on lower(email); fails if two keys differ only where Postgres lowercases alike.
CREATE UNIQUE INDEX operators_email_lower_key ON operators (lower(email));
DROP INDEX operators_email_key_key;
DROP TRIGGER operators_default_email_key ON operators;
DROP FUNCTION operators_default_email_key();
ALTER TABLE operators DROP COLUMN email_key;
