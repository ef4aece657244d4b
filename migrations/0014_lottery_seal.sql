-- A lottery is sealed at its close (README "The lottery"): the pool's hash
-- and size are stored then, before the public value is known, and never
-- change afterwards; the draw ranks that pool. Lotteries drawn before this
-- were sealed by their draw.
ALTER TABLE lotteries ADD COLUMN sealed_at timestamptz;
UPDATE lotteries SET sealed_at = drawn_at WHERE drawn_at IS NOT NULL;
-- 0013's first table check tied pool_hash and entries to the draw.
ALTER TABLE lotteries DROP CONSTRAINT lotteries_check;
ALTER TABLE lotteries ADD CONSTRAINT lotteries_sealed_check
    CHECK ((sealed_at IS NULL) = (pool_hash IS NULL) AND (sealed_at IS NULL) = (entries IS NULL));
ALTER TABLE lotteries ADD CONSTRAINT lotteries_drawn_check
    CHECK ((drawn_at IS NULL) = (capacity IS NULL) AND (drawn_at IS NULL OR sealed_at IS NOT NULL));
