-- Notifications pushed to students (README "Notifications"). The work itself
-- travels in the job queue (the `underway` crate, schema `underway`, migrated
-- by db::migrate); this table is what admins read, and its unique key is what
-- makes one event reach one recipient at most once.
CREATE TABLE notifications (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The event and its recipient, e.g. `reminder:42` (ticket 42): enqueuing
    -- the same event again inserts nothing and sends nothing.
    idempotency_key text NOT NULL UNIQUE CHECK (length(idempotency_key) BETWEEN 1 AND 200),
    kind            text NOT NULL CHECK (kind IN ('activity_changed', 'reminder', 'test')),
    -- A ticket's notices go to whoever holds its student ID when they are sent;
    -- a test message goes to one simulator student, bound or not.
    student_id      text,
    openid          text,
    activity_id     bigint REFERENCES activities (id) ON DELETE CASCADE,
    ticket_id       bigint REFERENCES tickets (id) ON DELETE CASCADE,
    -- The customer-service text; the ticket link is signed and added when sent.
    body            text NOT NULL CHECK (length(body) BETWEEN 1 AND 1000),
    -- The template message's fields, each at most 20 characters as WeChat requires.
    template_data   jsonb NOT NULL DEFAULT '{}',
    state           text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'sent', 'undelivered')),
    channel         text CHECK (channel IN ('customer_service', 'template', 'simulator')),
    -- Why it was undelivered, or the last transient failure of a queued one.
    reason          text,
    attempts        integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (student_id IS NOT NULL OR openid IS NOT NULL),
    CHECK ((state = 'sent') = (channel IS NOT NULL)),
    CHECK (state <> 'undelivered' OR reason IS NOT NULL)
);
CREATE INDEX notifications_recent ON notifications (created_at DESC, id DESC);

-- WeChat allows customer-service messages for 48 hours after the user's last
-- message or menu click; the WeChat endpoint records when that was.
ALTER TABLE students ADD COLUMN last_interaction_at timestamptz;
