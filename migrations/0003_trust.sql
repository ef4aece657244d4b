-- Trust at the WeChat edge (replays, one ticket per WeChat account, bind links
-- that bind once).

-- A signed query (`timestamp`, `nonce`) carries one message only: the first
-- message it carried is recorded here, in the transaction that handled it. A
-- retry of that message under the same pair is answered; another body under it
-- is refused. Rows older than the freshness window are useless (a query that
-- old is refused as stale) and are pruned.
CREATE TABLE wechat_signed_queries (
    timestamp  bigint NOT NULL,
    nonce      text NOT NULL,
    dedup_key  text NOT NULL,
    PRIMARY KEY (timestamp, nonce)
);

-- The WeChat account that booked a ticket. Besides one live ticket per student
-- ID, one live ticket per WeChat account per activity: unbinding and binding
-- another student ID does not buy a second ticket. Tickets issued before this
-- column existed have no openid and are bound by the student-ID rule only.
ALTER TABLE tickets ADD COLUMN openid text;
CREATE UNIQUE INDEX tickets_one_live_per_openid ON tickets (activity_id, openid) WHERE status <> 'cancelled';

-- A bind link binds once: its nonce is recorded when it is used, and kept until
-- the link would have expired anyway.
CREATE TABLE used_bind_links (
    nonce      text PRIMARY KEY,
    expires_at timestamptz NOT NULL
);
CREATE INDEX used_bind_links_expiry ON used_bind_links (expires_at);

-- How many times this WeChat account has bound a student ID, so the audit log
-- can tell a rebind from a first bind.
ALTER TABLE students ADD COLUMN binds integer NOT NULL DEFAULT 0 CHECK (binds >= 0);
UPDATE students SET binds = 1 WHERE student_id IS NOT NULL;
