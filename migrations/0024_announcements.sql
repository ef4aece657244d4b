-- 群发: an activity announced to every follower of the account (README
-- "Announcements to followers"). One row per announcement. Its text is sent
-- as a preview to one openid first; only that previewed text may be sent to
-- all, and only once: a send claims the row (status 'previewed' → 'sending')
-- before calling WeChat, so two instances or a double-submitted form send
-- one 群发. WeChat's msg_id is recorded after, and the MASSSENDJOBFINISH
-- event it posts to /wechat later fills in the counts, once.
CREATE TABLE announcements (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    activity_id    bigint NOT NULL REFERENCES activities (id) ON DELETE CASCADE,
    -- The text being composed; once previewed, the text of the last preview.
    body           text NOT NULL CHECK (length(body) BETWEEN 1 AND 600),
    kind           text NOT NULL DEFAULT 'text' CHECK (kind IN ('text')),
    status         text NOT NULL DEFAULT 'draft'
        CHECK (status IN ('draft', 'previewed', 'sending', 'sent', 'finished')),
    created_by     text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    preview_openid text,
    previewed_at   timestamptz,
    -- When the send was claimed: a claim left by a crashed instance may be
    -- taken over after a while (WeChat's clientmsgid keeps that from sending twice).
    claimed_at     timestamptz,
    sent_by        text,
    sent_at        timestamptz,
    msg_id         bigint UNIQUE,
    msg_data_id    bigint,
    -- The last refusal (a quota, say), in words; cleared by a successful send.
    error          text,
    -- From MASSSENDJOBFINISH: WeChat's status words and its counts.
    result         text,
    total_count    integer,
    filter_count   integer,
    sent_count     integer,
    error_count    integer,
    finished_at    timestamptz,
    CHECK ((status IN ('sent', 'finished')) = (msg_id IS NOT NULL)),
    CHECK ((status = 'finished') = (finished_at IS NOT NULL))
);
CREATE INDEX announcements_activity ON announcements (activity_id, created_at DESC);
