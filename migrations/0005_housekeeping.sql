-- Housekeeping deletes what no one needs any more; these indexes serve its deletes.

-- Simulator chats older than the retention are forgotten.
CREATE INDEX simulator_messages_age ON simulator_messages (created_at);

-- A poster replaced by another (or never used) is forgotten once no activity
-- points at it; the lookup from an image to the activities using it.
CREATE INDEX activities_by_poster ON activities (poster_id) WHERE poster_id IS NOT NULL;
CREATE INDEX images_age ON images (created_at);
