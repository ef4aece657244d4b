-- A word from the organizer to everyone holding a live ticket (and, if they
-- chose, everyone on the waiting list): one row per message, one
-- notification per recipient (keyed `message-<id>:…`, so a retry or a
-- second instance never sends one twice). The form's nonce makes a
-- resubmitted form (a double tap, a browser retry) the same message.
CREATE TABLE holder_messages (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    activity_id     bigint NOT NULL REFERENCES activities (id) ON DELETE CASCADE,
    body            text NOT NULL CHECK (length(body) BETWEEN 1 AND 300),
    include_waiting boolean NOT NULL DEFAULT false,
    recipients      integer NOT NULL CHECK (recipients >= 0),
    sent_by         text NOT NULL,
    nonce           text NOT NULL CHECK (length(nonce) BETWEEN 8 AND 64),
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (activity_id, nonce)
);
CREATE INDEX holder_messages_activity ON holder_messages (activity_id, created_at DESC);

ALTER TABLE notifications DROP CONSTRAINT notifications_kind_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_kind_check
    CHECK (kind IN ('activity_changed', 'reminder', 'test', 'waiting_promoted', 'waiting_closed',
                    'lottery_won', 'lottery_lost', 'place_assigned', 'holder_message'));
