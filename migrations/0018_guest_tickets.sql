-- Guest tickets (issue 22): tickets an organizer issues outside the booking
-- window, to performers, guests, the photographer. A guest ticket is an
-- ordinary ticket (it takes a place from `activity_slots`, checks in, is
-- cancelled like any other) with the guest's name, a note, and who issued it.
--
-- A guest without a student ID gets the synthetic `student_id` `guest:` + the
-- first 12 characters of the ticket code: `tickets.student_id` stays NOT NULL
-- (every query keyed on it keeps working), the one-live-ticket index still
-- holds, and since a real student ID must match `STUDENT_ID_PATTERN` and be
-- bound through `students`, which never holds a `guest:` value issued here,
-- it never names a student. Pages show the guest's name instead.
ALTER TABLE tickets
    ADD COLUMN guest_name text CHECK (char_length(guest_name) BETWEEN 1 AND 64),
    ADD COLUMN guest_note text CHECK (char_length(guest_note) <= 200),
    ADD COLUMN issued_by  text,
    ADD CONSTRAINT tickets_guest_issued_by CHECK ((guest_name IS NULL) = (issued_by IS NULL)),
    ADD CONSTRAINT tickets_guest_note_of_guest CHECK (guest_note IS NULL OR guest_name IS NOT NULL);

-- The activity page lists its guest tickets.
CREATE INDEX tickets_guests ON tickets (activity_id, id) WHERE guest_name IS NOT NULL;
