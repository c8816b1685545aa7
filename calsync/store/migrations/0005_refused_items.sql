-- Items set aside (issue 13/14): an item the source could not read is refused alone.
-- depends: 0004_quiet_polls
--
-- One item Exchange sends without a readable start or end, or in a form calsync cannot
-- convert, must not block its whole mailbox. The adapter refuses it with a catalogue code;
-- the batch commits the rest and records the refusal here, so `calsync status` can name it
-- (item id, code, reason). A later change of the item brings it back in a page: if it reads
-- then, or is deleted, its row here goes.
CREATE TABLE refused_items (
    operator_id      bigint NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
    item_id          text NOT NULL,
    change_key       text,
    code             text NOT NULL,
    reason           text NOT NULL,
    first_refused_at timestamptz NOT NULL DEFAULT now(),
    refused_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (operator_id, item_id)
);
