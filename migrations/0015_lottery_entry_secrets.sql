-- Each registration's secret: 16 random bytes that only the student is given.
-- eid = hex(sha256(server_seed ‖ secret ‖ utf8(student_id))), so the eids a
-- draw publishes, with its server_seed, say nothing about which student IDs
-- registered (student IDs are easy to guess; secrets are not). NULL only for
-- an entry drawn before entries had secrets: its eid, published already, is
-- hex(sha256(server_seed ‖ utf8(student_id))).
ALTER TABLE lottery_entries ADD COLUMN secret bytea CHECK (octet_length(secret) = 16);
-- Registrations still waiting for their draw get a secret and the eid of the
-- new formula (their pages show both). Drawn ones keep the eid they were
-- published with. gen_random_uuid() is PostgreSQL's strong random source
-- (core since 13): 122 random bits.
UPDATE lottery_entries e SET secret = decode(replace(gen_random_uuid()::text, '-', ''), 'hex')
    FROM lotteries l WHERE l.activity_id = e.activity_id AND l.drawn_at IS NULL;
UPDATE lottery_entries e SET eid = encode(sha256(l.server_seed || e.secret || convert_to(e.student_id, 'UTF8')), 'hex')
    FROM lotteries l WHERE l.activity_id = e.activity_id AND l.drawn_at IS NULL;

