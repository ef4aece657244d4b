-- Failed logins are throttled per (username, address) and per address, no
-- longer per username alone (which let anyone lock an admin out). `address`
-- holds what is throttled: an IPv4 address, or an IPv6 /64 (`2001:db8::/64`).
DROP INDEX login_failures_by_username;
CREATE INDEX login_failures_by_account_and_address ON login_failures (username, address, at);

-- Housekeeping forgets failures older than a day.
CREATE INDEX login_failures_age ON login_failures (at);
