-- The waiting list (候补) of a sold-out activity. Order is the id (join order).
-- Invariant (kept by booking/waiting.rs, every change under the activity row's
-- lock): an activity has entries only while none of its slots has a place, so
-- a rush booking that finds a place can never be taking it from someone waiting.
CREATE TABLE waiting_list (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    activity_id bigint NOT NULL REFERENCES activities (id) ON DELETE CASCADE,
    student_id  text NOT NULL,
    openid      text NOT NULL,
    joined_at   timestamptz NOT NULL DEFAULT now(),
    -- Entries stay after they end, so the order promotions went in can be checked.
    state       text NOT NULL DEFAULT 'waiting' CHECK (state IN ('waiting', 'promoted', 'left', 'closed')),
    ticket_id   bigint REFERENCES tickets (id),
    ended_at    timestamptz,
    CHECK ((state = 'waiting') = (ended_at IS NULL)),
    CHECK ((state = 'promoted') = (ticket_id IS NOT NULL))
);
-- One entry in line per student ID and per WeChat account.
CREATE UNIQUE INDEX waiting_list_one_per_student ON waiting_list (activity_id, student_id) WHERE state = 'waiting';
CREATE UNIQUE INDEX waiting_list_one_per_openid ON waiting_list (activity_id, openid) WHERE state = 'waiting';
-- The line itself: its head, and each entry's position, read in order.
CREATE INDEX waiting_list_line ON waiting_list (activity_id, id) WHERE state = 'waiting';
CREATE INDEX waiting_list_by_student ON waiting_list (student_id) WHERE state = 'waiting';

ALTER TABLE notifications DROP CONSTRAINT notifications_kind_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_kind_check
    CHECK (kind IN ('activity_changed', 'reminder', 'test', 'waiting_promoted', 'waiting_closed'));

-- The no-show rule (NO_SHOW_LIMIT): an admin's forgiveness of a student ID.
-- Tickets left unused at activities that ended before it no longer count.
CREATE TABLE no_show_forgiven (
    student_id  text PRIMARY KEY CHECK (length(student_id) BETWEEN 1 AND 32),
    forgiven_at timestamptz NOT NULL DEFAULT now(),
    forgiven_by text NOT NULL
);
