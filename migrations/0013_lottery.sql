-- Lottery mode (抽签, README "The lottery"): during the booking window
-- students register instead of booking; at book_end one draw, verifiable by
-- anyone, gives the places and puts everyone else on the waiting list in draw
-- order. Chosen at creation.
ALTER TABLE activities ADD COLUMN mode text NOT NULL DEFAULT 'rush' CHECK (mode IN ('rush', 'lottery'));

-- One per lottery activity, made when it is published. The seed stays secret
-- until the draw; its commitment is public from the start, so the seed cannot
-- be chosen after the entries are known.
CREATE TABLE lotteries (
    activity_id  bigint PRIMARY KEY REFERENCES activities (id) ON DELETE CASCADE,
    server_seed  bytea NOT NULL CHECK (octet_length(server_seed) = 32),
    -- hex(sha256(server_seed))
    commitment   text NOT NULL CHECK (commitment ~ '^[0-9a-f]{64}$'),
    committed_at timestamptz NOT NULL DEFAULT now(),
    -- What the admin announced before the close, e.g. the public lottery
    -- result the draw will wait for; frozen once booking ends.
    public_value_announced text CHECK (length(public_value_announced) BETWEEN 1 AND 200),
    -- The value the seed uses, confirmed by an admin after the close (only
    -- when one was announced: then the draw waits for it).
    public_value           text CHECK (length(public_value) BETWEEN 1 AND 200),
    public_value_confirmed_by text,
    public_value_confirmed_at timestamptz,
    -- Published by the draw.
    entries      integer CHECK (entries >= 0),
    pool_hash    text CHECK (pool_hash ~ '^[0-9a-f]{64}$'),
    winners      integer CHECK (winners >= 0),
    -- The capacity the draw used: the first this many won (a later edit of
    -- the activity's capacity changes its waiting list, not the draw).
    capacity     integer CHECK (capacity >= 1),
    drawn_at     timestamptz,
    CHECK ((drawn_at IS NULL) = (pool_hash IS NULL) AND (drawn_at IS NULL) = (entries IS NULL)
           AND (drawn_at IS NULL) = (capacity IS NULL)),
    CHECK ((public_value IS NULL) = (public_value_confirmed_at IS NULL)),
    CHECK (public_value IS NULL OR public_value_announced IS NOT NULL)
);

-- Registrations. One per student ID and one per WeChat account; a student may
-- withdraw (the row goes) until the close.
CREATE TABLE lottery_entries (
    -- The lottery's row, not the activity's: a registration holds that row
    -- FOR SHARE already (booking/lottery), so the foreign key's own lock adds
    -- no second hot row to a registration rush.
    activity_id bigint NOT NULL REFERENCES lotteries (activity_id) ON DELETE CASCADE,
    student_id  text NOT NULL CHECK (length(student_id) BETWEEN 1 AND 32),
    openid      text NOT NULL,
    -- hex(sha256(server_seed ‖ utf8(student_id))): the entry's public id.
    eid         text NOT NULL CHECK (eid ~ '^[0-9a-f]{64}$'),
    entered_at  timestamptz NOT NULL DEFAULT now(),
    -- 1 is first; set by the draw. The first `capacity` won.
    rank        integer CHECK (rank >= 1),
    ticket_id   bigint REFERENCES tickets (id),
    PRIMARY KEY (activity_id, student_id),
    UNIQUE (activity_id, openid)
);
CREATE INDEX lottery_entries_by_student ON lottery_entries (student_id);

ALTER TABLE notifications DROP CONSTRAINT notifications_kind_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_kind_check
    CHECK (kind IN ('activity_changed', 'reminder', 'test', 'waiting_promoted', 'waiting_closed',
                    'lottery_won', 'lottery_lost'));

-- The export tells a ticket that came from the waiting list by this link.
CREATE INDEX waiting_list_ticket ON waiting_list (ticket_id) WHERE ticket_id IS NOT NULL;
