-- One normalised key per operator address, computed by Python (issue 14, CSV edge cases).
-- depends: 0004_quiet_polls
--
-- Operators were unique on lower(email), while the importer compared Python's lowercase:
-- 'İnfo@' and 'info@' were two rows to Python and one to the index (a CardinalityViolation),
-- and across two files the second disabled the first. The key is now calsync.operators.emails.key()
-- (NFKC, casefold), stored and compared as it is, so Postgres never lowercases an address again.
-- Rows written by plain SQL without a key (the demo, tests) get lower(email), the old rule,
-- which is the same as the Python key for ASCII addresses.
ALTER TABLE operators ADD COLUMN email_key text;
UPDATE operators SET email_key = lower(email);
ALTER TABLE operators ALTER COLUMN email_key SET NOT NULL;

CREATE FUNCTION operators_default_email_key() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.email_key IS NULL
       OR (TG_OP = 'UPDATE' AND NEW.email IS DISTINCT FROM OLD.email AND NEW.email_key = OLD.email_key) THEN
        NEW.email_key := lower(NEW.email);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER operators_default_email_key BEFORE INSERT OR UPDATE OF email, email_key ON operators
    FOR EACH ROW EXECUTE FUNCTION operators_default_email_key();

CREATE UNIQUE INDEX operators_email_key_key ON operators (email_key);
DROP INDEX operators_email_lower_key;
