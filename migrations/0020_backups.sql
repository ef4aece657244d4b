-- Backups (issue 23, README "Backups"): every attempt, nightly or taken by
-- hand with `wechat-ticket backup`, good or failed, so `/healthz` and the
-- admin dashboard can say when the last good one was taken and why the last
-- one failed. The file itself lives on disk (BACKUP_DIR); this is its log.
--
-- A dump leaves this table's rows out (`pg_dump --exclude-table-data`): they
-- describe files on the machine that wrote them, and the dump's own row would
-- be caught half-written ('running').
CREATE TABLE backups (
    id            bigserial PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('nightly', 'manual')),
    -- A nightly backup's night: the scheduled time it was taken for.
    scheduled_for timestamptz,
    outcome       text NOT NULL DEFAULT 'running' CHECK (outcome IN ('running', 'ok', 'failed')),
    file          text NOT NULL,
    bytes         bigint,
    error         text,
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    CHECK ((kind = 'nightly') = (scheduled_for IS NOT NULL)),
    CHECK ((outcome = 'running') = (finished_at IS NULL))
);

-- One backup a night however many instances run the clock: an attempt holds
-- its night while it runs and keeps it once it succeeded; a failed attempt
-- lets go, so a retry can take the night again (and is recorded too).
CREATE UNIQUE INDEX backups_one_a_night ON backups (scheduled_for) WHERE outcome IN ('running', 'ok');

-- `/healthz` reads the newest good backup and the newest attempt.
CREATE INDEX backups_good ON backups (finished_at DESC) WHERE outcome = 'ok';
CREATE INDEX backups_started ON backups (started_at DESC);
