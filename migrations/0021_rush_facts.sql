-- The rush as a picture (README "Rush chart").

-- The moment an activity first had no place left, recorded by the booking
-- statement that took the last place (booking/tickets.rs), once. NULL: never
-- sold out, or the rare rush where the last places went in concurrent
-- statements that each still saw the other's place free; the chart's reading
-- then works it out from the tickets (booking/rush_facts.rs).
ALTER TABLE activities ADD COLUMN sold_out_at timestamptz;

-- Refused bookings per activity, second and reason. Counted in memory by each
-- instance and added here about once a second in one statement
-- (booking/refusals.rs), never written by the refused booking itself: a
-- picture of the rush, not a record (a crash loses at most a second's counts).
CREATE TABLE booking_refusals (
    activity_id bigint NOT NULL REFERENCES activities (id) ON DELETE CASCADE,
    second      timestamptz NOT NULL,
    reason      text NOT NULL
        CHECK (reason IN ('sold_out', 'not_open_yet', 'closed', 'already_holds', 'not_bound', 'paused')),
    count       integer NOT NULL CHECK (count > 0),
    PRIMARY KEY (activity_id, second, reason)
);
