-- The admin simulator (/admin/simulator): test students chat through the real
-- /wechat route. Their openids start with `simulator-`.

-- A ticket booked by a test student takes a place like any other (the booking
-- rules do not tell them apart), but counts and exports leave it out unless asked.
ALTER TABLE tickets ADD COLUMN simulated boolean NOT NULL DEFAULT false;

-- What each test student's chat shows: their messages, menu taps and the
-- account's replies, drawn the way WeChat draws them.
CREATE TABLE simulator_messages (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    openid     text NOT NULL CHECK (openid LIKE 'simulator-%'),
    -- 'sent' (the student's text), 'action' (a menu tap, a follow), 'text' or 'news' (a reply).
    kind       text NOT NULL CHECK (kind IN ('sent', 'action', 'text', 'news')),
    body       text NOT NULL,
    title      text NOT NULL DEFAULT '',
    url        text NOT NULL DEFAULT '',
    pic_url    text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX simulator_messages_by_student ON simulator_messages (openid, id);
