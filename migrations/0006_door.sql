-- At the door: volunteer check-in links (one per gate), who checked each
-- ticket in, and every scan by its client nonce, so a repeated request
-- returns the first answer and changes nothing.

-- A link opens a scan-only page for one activity at one gate, until it
-- expires or is revoked. The URL carries the id and an HMAC over it (the
-- secret key), so the row alone is not enough to forge one.
CREATE TABLE checkin_links (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    activity_id bigint NOT NULL REFERENCES activities (id) ON DELETE CASCADE,
    gate        text NOT NULL CHECK (length(gate) BETWEEN 1 AND 32),
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL CHECK (expires_at > created_at),
    revoked_at  timestamptz
);
CREATE INDEX checkin_links_by_activity ON checkin_links (activity_id, created_at DESC);

-- Who checked the ticket in: a gate's link (its name copied, so a revoked
-- link still names its gate) or an admin.
ALTER TABLE tickets
    ADD COLUMN checked_in_link bigint REFERENCES checkin_links (id) ON DELETE SET NULL,
    ADD COLUMN checked_in_by   text;

-- Every scan and its answer. `scanner` is `gate:<link id>` or `admin:<username>`:
-- a nonce is one scanner's, so no one can replay another gate's answers.
CREATE TABLE checkin_scans (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scanner     text NOT NULL,
    nonce       text NOT NULL CHECK (length(nonce) BETWEEN 16 AND 64),
    activity_id bigint NOT NULL REFERENCES activities (id) ON DELETE CASCADE,
    ticket_id   bigint REFERENCES tickets (id) ON DELETE SET NULL,
    good        boolean NOT NULL DEFAULT false,
    headline    text NOT NULL DEFAULT '',
    detail      text NOT NULL DEFAULT '',
    scanned_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (scanner, nonce)
);
CREATE INDEX checkin_scans_recent ON checkin_scans (activity_id, scanner, scanned_at DESC);
