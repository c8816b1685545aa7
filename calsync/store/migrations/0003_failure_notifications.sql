-- Failure episodes and the global pause (issue 7).
-- depends: 0001_initial
--
-- An episode runs from the moment an operator's sync was given up (cancelled after the
-- notification timeout, or failed permanently) until it succeeds again; the whole service
-- has episodes too (operator_id NULL) while a global failure pauses syncing. Emails are sent
-- once per episode: notified_at for the failure, recovery_notified_at for the recovery.

CREATE TABLE failure_episodes (
    id                    bigserial PRIMARY KEY,
    operator_id           bigint REFERENCES operators (id) ON DELETE CASCADE,
    code                  text NOT NULL,
    disposition           text NOT NULL CHECK (disposition IN ('transient', 'resync', 'operator', 'global')),
    message               text NOT NULL DEFAULT '',
    started_at            timestamptz NOT NULL DEFAULT now(),
    last_failed_at        timestamptz NOT NULL DEFAULT now(),
    attempts              integer NOT NULL DEFAULT 1,
    -- operators affected when the episode is global (filled when it is notified)
    operators_affected    integer NOT NULL DEFAULT 0,
    -- When the episode became worth an email (an operator's: when it was given up; the
    -- global one: when it had lasted the notification timeout). NULL: not (yet).
    failed_at             timestamptz,
    notified_at           timestamptz,
    recovered_at          timestamptz,
    recovery_notified_at  timestamptz
);
CREATE UNIQUE INDEX failure_episodes_one_open_per_operator
    ON failure_episodes (operator_id) WHERE recovered_at IS NULL AND operator_id IS NOT NULL;
CREATE UNIQUE INDEX failure_episodes_one_open_global
    ON failure_episodes ((operator_id IS NULL)) WHERE recovered_at IS NULL AND operator_id IS NULL;
CREATE INDEX failure_episodes_to_notify
    ON failure_episodes (id) WHERE (failed_at IS NOT NULL AND notified_at IS NULL)
                               OR (recovered_at IS NOT NULL AND notified_at IS NOT NULL AND recovery_notified_at IS NULL);

-- At most one row: while it exists, nobody calls Exchange except one probe per period.
CREATE TABLE global_pause (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    code        text NOT NULL,
    message     text NOT NULL DEFAULT '',
    since       timestamptz NOT NULL DEFAULT now(),
    -- Until then every batch releases its lease untouched; the first batch after it is the probe.
    until       timestamptz NOT NULL,
    probes      integer NOT NULL DEFAULT 0
);
