-- calsync schema, version 1.
-- The appointments and appointment_attendees tables are the contract with the CRM that
-- reads them: see "The CRM contract" in README.md before changing a column.

CREATE TABLE settings (
    key         text PRIMARY KEY,
    value       jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE operators (
    id             bigserial PRIMARY KEY,
    email          text NOT NULL CHECK (email <> ''),
    display_name   text NOT NULL DEFAULT '',
    calendar_sync  boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
-- Exchange addresses are case-insensitive: one operator per mailbox whatever the case.
CREATE UNIQUE INDEX operators_email_lower_key ON operators (lower(email));

-- Fencing tokens for per-operator leases: strictly increasing across the fleet.
CREATE SEQUENCE lease_token_seq;

CREATE TABLE sync_state (
    operator_id          bigint PRIMARY KEY REFERENCES operators (id) ON DELETE CASCADE,
    -- Opaque EWS SyncState stored with the batch that produced it (same transaction).
    ews_sync_state       text,
    -- initial: first full sync; incremental: change by change; resync: full sync after
    -- ErrorInvalidSyncStateData, ending in the removal of what Exchange no longer has.
    stage                text NOT NULL DEFAULT 'initial'
                         CHECK (stage IN ('initial', 'incremental', 'resync')),
    status               text NOT NULL DEFAULT 'not_synced'
                         CHECK (status IN ('not_synced', 'initial_sync', 'active', 'retrying',
                                           'failed', 'disabled')),
    -- Bumped each time a full sync starts; resync_seen rows belong to one generation.
    generation           integer NOT NULL DEFAULT 0,
    in_flight            boolean NOT NULL DEFAULT false,
    next_poll_at         timestamptz NOT NULL DEFAULT now(),
    last_poll_at         timestamptz,
    last_success_at      timestamptz,
    last_error_code      text,
    last_error_message   text,
    failing_since        timestamptz,
    attempts             integer NOT NULL DEFAULT 0,
    lease_token          bigint,
    -- The token before the current one: a batch redelivered after its transaction committed
    -- (the worker died before handing on) may continue the chain; commits stay fenced by
    -- the current token alone.
    prev_lease_token     bigint,
    lease_owner          text,
    lease_expires_at     timestamptz,
    current_run_id       bigint,
    batches_total        bigint NOT NULL DEFAULT 0,
    items_created        bigint NOT NULL DEFAULT 0,
    items_updated        bigint NOT NULL DEFAULT 0,
    items_deleted        bigint NOT NULL DEFAULT 0,
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sync_state_due_idx ON sync_state (next_poll_at) WHERE NOT in_flight;

CREATE TABLE appointments (
    id                     bigserial PRIMARY KEY,
    operator_id            bigint NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
    -- Exchange ItemId for singles and series masters; for occurrences and exceptions a
    -- stable key "<series item id>@<original start, UTC ISO 8601>" so a row stays the
    -- same row when an occurrence becomes an exception and back.
    item_id                text NOT NULL,
    change_key             text NOT NULL,
    kind                   text NOT NULL CHECK (kind IN ('single', 'series', 'occurrence', 'exception')),
    series_item_id         text,
    original_start         timestamptz,
    uid                    text,
    subject                text,
    body                   text,
    body_type              text,
    location               text,
    start_at               timestamptz NOT NULL,
    end_at                 timestamptz NOT NULL,
    timezone               text,
    is_all_day             boolean NOT NULL DEFAULT false,
    start_date             date,
    end_date               date,
    is_cancelled           boolean NOT NULL DEFAULT false,
    sensitivity            text NOT NULL DEFAULT 'Normal',
    details_withheld       boolean NOT NULL DEFAULT false,
    show_as                text NOT NULL DEFAULT 'Busy',
    organizer_email        text,
    organizer_name         text,
    is_organizer           boolean NOT NULL DEFAULT false,
    recurrence             jsonb,
    exchange_created_at    timestamptz,
    exchange_modified_at   timestamptz,
    synced_at              timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT appointments_operator_item_key UNIQUE (operator_id, item_id),
    CONSTRAINT appointments_all_day_dates CHECK (NOT is_all_day OR (start_date IS NOT NULL AND end_date IS NOT NULL)),
    CONSTRAINT appointments_series_link CHECK ((kind IN ('occurrence', 'exception')) = (series_item_id IS NOT NULL))
);
CREATE INDEX appointments_operator_start_idx ON appointments (operator_id, start_at);
CREATE INDEX appointments_series_idx ON appointments (operator_id, series_item_id) WHERE series_item_id IS NOT NULL;

CREATE TABLE appointment_attendees (
    appointment_id  bigint NOT NULL REFERENCES appointments (id) ON DELETE CASCADE,
    position        smallint NOT NULL,
    email           text NOT NULL,
    name            text,
    role            text NOT NULL CHECK (role IN ('required', 'optional', 'resource')),
    response        text,
    PRIMARY KEY (appointment_id, position)
);

-- Item ids seen during a full sync (initial or resync). At its last batch every mirror
-- row of the operator not seen in this generation is removed: a full resync gets no
-- tombstones for what was deleted meanwhile. A logged table, so a crash never turns
-- into a mass deletion.
CREATE TABLE resync_seen (
    operator_id  bigint NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
    generation   integer NOT NULL,
    item_id      text NOT NULL,
    PRIMARY KEY (operator_id, generation, item_id)
);

CREATE TABLE sync_runs (
    id              bigserial PRIMARY KEY,
    operator_id     bigint NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
    stage           text NOT NULL,
    status          text NOT NULL DEFAULT 'running'
                    CHECK (status IN ('running', 'succeeded', 'failed', 'cancelled')),
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    batches         integer NOT NULL DEFAULT 0,
    created         integer NOT NULL DEFAULT 0,
    updated         integer NOT NULL DEFAULT 0,
    deleted         integer NOT NULL DEFAULT 0,
    unchanged       integer NOT NULL DEFAULT 0,
    error_code      text,
    error_message   text
);
CREATE INDEX sync_runs_operator_idx ON sync_runs (operator_id, started_at DESC);

-- One row per dispatched beat slot: a second beat racing on the same tick finds it taken.
CREATE TABLE dispatch_ticks (
    slot           timestamptz PRIMARY KEY,
    dispatched_at  timestamptz NOT NULL DEFAULT now(),
    operators      integer NOT NULL DEFAULT 0
);

-- Every operator has exactly one sync_state row, also when the CRM inserts operators itself.
CREATE FUNCTION operators_add_sync_state() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO sync_state (operator_id, status)
    VALUES (NEW.id, CASE WHEN NEW.calendar_sync THEN 'not_synced' ELSE 'disabled' END)
    ON CONFLICT (operator_id) DO NOTHING;
    RETURN NEW;
END $$;
CREATE TRIGGER operators_sync_state AFTER INSERT ON operators
    FOR EACH ROW EXECUTE FUNCTION operators_add_sync_state();
