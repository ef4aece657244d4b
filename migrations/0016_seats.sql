-- Seats (README "Seats"): an activity is standing room (`none`), sells named
-- zones with quotas (`zone`), or a hall's numbered seats (`seat`); chosen at
-- creation. Students book as before and choose a place afterwards; whoever
-- has not chosen by the seat deadline is given one by the clock's sweep.

-- Halls: reusable seat maps, imported from CSV (zone,row,seat[,x,y]).
CREATE TABLE halls (
    id         bigserial PRIMARY KEY,
    name       text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 64),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE hall_seats (
    id         bigserial PRIMARY KEY,
    hall_id    bigint NOT NULL REFERENCES halls (id) ON DELETE CASCADE,
    -- The line's place in the file: seats without x,y are drawn in this order.
    position   integer NOT NULL CHECK (position >= 1),
    zone       text NOT NULL CHECK (length(zone) BETWEEN 1 AND 32),
    row_label  text NOT NULL CHECK (length(row_label) BETWEEN 1 AND 16 AND strpos(row_label, '-') = 0),
    seat_label text NOT NULL CHECK (length(seat_label) BETWEEN 1 AND 16 AND strpos(seat_label, '-') = 0),
    x          real,
    y          real,
    CHECK ((x IS NULL) = (y IS NULL)),
    UNIQUE (hall_id, zone, row_label, seat_label)
);

ALTER TABLE activities
    ADD COLUMN seating text NOT NULL DEFAULT 'none' CHECK (seating IN ('none', 'zone', 'seat')),
    ADD COLUMN hall_id bigint REFERENCES halls (id),
    -- Choices close here; NULL means at book_end.
    ADD COLUMN seat_deadline timestamptz,
    -- When the sweep gave the remaining tickets their places.
    ADD COLUMN seats_assigned_at timestamptz,
    ADD CONSTRAINT activities_hall_iff_seat CHECK ((seating = 'seat') = (hall_id IS NOT NULL));

CREATE INDEX activities_hall ON activities (hall_id) WHERE hall_id IS NOT NULL;

-- A zone activity's zones. `taken` counts live tickets placed in the zone; a
-- choice takes one in the same transaction as the ticket's update, so a zone
-- never holds more than its quota.
CREATE TABLE activity_zones (
    activity_id bigint NOT NULL REFERENCES activities (id) ON DELETE CASCADE,
    zone        text NOT NULL CHECK (length(zone) BETWEEN 1 AND 32),
    position    integer NOT NULL,
    quota       integer NOT NULL CHECK (quota >= 1),
    taken       integer NOT NULL DEFAULT 0 CHECK (taken >= 0 AND taken <= quota),
    PRIMARY KEY (activity_id, zone)
);

-- Seats of the hall held back for one activity (guests, a camera platform):
-- never offered, never assigned.
CREATE TABLE seat_blocks (
    activity_id bigint NOT NULL REFERENCES activities (id) ON DELETE CASCADE,
    seat_id     bigint NOT NULL REFERENCES hall_seats (id),
    PRIMARY KEY (activity_id, seat_id)
);

-- A ticket's place: its zone (both modes) and, in seat mode, its seat.
ALTER TABLE tickets
    ADD COLUMN zone text,
    ADD COLUMN seat_id bigint REFERENCES hall_seats (id),
    ADD COLUMN placed_at timestamptz,
    -- `student`, `sweep`, or the admin who moved the student.
    ADD COLUMN placed_by text,
    ADD CONSTRAINT tickets_seat_has_zone CHECK (seat_id IS NULL OR zone IS NOT NULL);

-- The guarantee: no seat is held by two live tickets of one activity. A
-- cancelled ticket keeps its history and no longer holds the seat.
CREATE UNIQUE INDEX tickets_one_per_seat ON tickets (activity_id, seat_id)
    WHERE seat_id IS NOT NULL AND status <> 'cancelled';

ALTER TABLE notifications DROP CONSTRAINT notifications_kind_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_kind_check
    CHECK (kind IN ('activity_changed', 'reminder', 'test', 'waiting_promoted', 'waiting_closed',
                    'lottery_won', 'lottery_lost', 'place_assigned'));
