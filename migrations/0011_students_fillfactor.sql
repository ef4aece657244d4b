-- Every message from a student updates `students.last_interaction_at` (at most
-- once a minute; notifications need it for WeChat's 48-hour window). Room left
-- in each page lets PostgreSQL do that as a HOT update — no new index entries,
-- less WAL — instead of moving the row, which in a ticket rush costs every
-- message. Tables created from here on get the room; an existing table gets it
-- page by page as rows are rewritten (or at once with VACUUM FULL).
ALTER TABLE students SET (fillfactor = 70);
