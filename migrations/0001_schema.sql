-- The whole product's schema. Rules that must hold under any concurrency and on
-- any number of app instances are constraints here, not only checks in code.

-- Small key/value settings: the HMAC secret key, the development WeChat token.
CREATE TABLE settings (
    name       text PRIMARY KEY,
    value      text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Uploaded posters, stored in the database so every instance can serve them.
CREATE TABLE images (
    id           uuid PRIMARY KEY,
    content_type text NOT NULL CHECK (content_type IN ('image/png', 'image/jpeg', 'image/webp', 'image/gif')),
    bytes        bytea NOT NULL CHECK (octet_length(bytes) > 0),
    sha256       text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE activities (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Typed by students in `抢票 <key>`, so short, ASCII and lower case.
    key         text NOT NULL UNIQUE CHECK (key ~ '^[a-z0-9][a-z0-9_-]{0,31}$'),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    place       text NOT NULL CHECK (length(place) BETWEEN 1 AND 100),
    description text NOT NULL DEFAULT '',
    poster_id   uuid REFERENCES images (id),
    book_start  timestamptz NOT NULL,
    book_end    timestamptz NOT NULL,
    start_at    timestamptz NOT NULL,
    end_at      timestamptz NOT NULL,
    capacity    integer NOT NULL CHECK (capacity BETWEEN 1 AND 1000000),
    status      text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'published', 'archived')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT activity_times_in_order CHECK (book_start < book_end AND book_end <= start_at AND start_at < end_at)
);

-- The places left of an activity, split over several rows so that a rush does
-- not queue every booking behind one hot counter row: a booking takes a unit
-- from any slot it can lock without waiting. Invariant (kept by booking/):
-- sum(remaining) + live tickets = capacity.
CREATE TABLE activity_slots (
    activity_id bigint NOT NULL REFERENCES activities (id) ON DELETE CASCADE,
    slot        smallint NOT NULL CHECK (slot >= 0),
    remaining   integer NOT NULL CHECK (remaining >= 0),
    PRIMARY KEY (activity_id, slot)
);

-- Students who may book: the imported roster (STUDENT_VERIFY=roster).
CREATE TABLE roster (
    student_id  text PRIMARY KEY CHECK (length(student_id) BETWEEN 1 AND 32),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
    imported_at timestamptz NOT NULL DEFAULT now()
);

-- WeChat users (one row per openid) and the student ID each is bound to.
CREATE TABLE students (
    openid     text PRIMARY KEY,
    -- One student ID belongs to one WeChat user at a time.
    student_id text UNIQUE CHECK (length(student_id) BETWEEN 1 AND 32),
    name       text CHECK (length(name) BETWEEN 1 AND 64),
    bound_at   timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((student_id IS NULL) = (bound_at IS NULL))
);

-- Tickets belong to the student ID, not the WeChat account: unbinding keeps them.
CREATE TABLE tickets (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The bearer secret in the ticket URL: 128 random bits, base64url.
    code          text NOT NULL UNIQUE CHECK (length(code) >= 22),
    activity_id   bigint NOT NULL REFERENCES activities (id),
    student_id    text NOT NULL,
    -- The activity slot this ticket's place came from; cancelling gives it back there.
    slot          smallint NOT NULL,
    status        text NOT NULL DEFAULT 'valid' CHECK (status IN ('valid', 'used', 'cancelled')),
    booked_at     timestamptz NOT NULL DEFAULT now(),
    checked_in_at timestamptz,
    cancelled_at  timestamptz,
    CHECK ((status = 'used') = (checked_in_at IS NOT NULL)),
    CHECK ((status = 'cancelled') = (cancelled_at IS NOT NULL)),
    CHECK (checked_in_at IS NULL OR checked_in_at >= booked_at),
    CHECK (cancelled_at IS NULL OR cancelled_at >= booked_at)
);
-- One live (valid or used) ticket per student per activity.
CREATE UNIQUE INDEX tickets_one_live_per_student ON tickets (activity_id, student_id) WHERE status <> 'cancelled';
CREATE INDEX tickets_by_student ON tickets (student_id);

CREATE TABLE admin_users (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username      text NOT NULL UNIQUE CHECK (username ~ '^[A-Za-z0-9_.-]{1,64}$'),
    password_hash text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_login_at timestamptz
);

-- Admin sessions; the id stored is a hash of the cookie value, never the value.
CREATE TABLE admin_sessions (
    id         text PRIMARY KEY,
    user_id    bigint NOT NULL REFERENCES admin_users (id) ON DELETE CASCADE,
    csrf_token text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    CHECK (expires_at > created_at)
);
CREATE INDEX admin_sessions_expiry ON admin_sessions (expires_at);

-- Failed logins, for throttling per account and per address.
CREATE TABLE login_failures (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username  text NOT NULL,
    address   text NOT NULL,
    at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_failures_by_username ON login_failures (username, at);
CREATE INDEX login_failures_by_address ON login_failures (address, at);

-- WeChat retries a message it got no answer to within 5 s. The first answer is
-- kept here, written in the same transaction as whatever the message changed,
-- so a retry (on any instance) gets the same answer and changes nothing.
CREATE TABLE wechat_messages (
    dedup_key  text PRIMARY KEY,
    reply      text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX wechat_messages_age ON wechat_messages (created_at);

-- The WeChat API access token, shared by all instances.
CREATE TABLE wechat_access_tokens (
    appid        text PRIMARY KEY,
    access_token text NOT NULL,
    expires_at   timestamptz NOT NULL,
    refreshed_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE audit_log (
    id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    actor  text NOT NULL,
    action text NOT NULL,
    detail text NOT NULL DEFAULT '',
    at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_at ON audit_log (at DESC);
