-- Housekeeping forgets door scans a month old (their nonces only guard
-- against a phone resending a scan within seconds); this index serves it.
CREATE INDEX checkin_scans_age ON checkin_scans (scanned_at);
