-- Identity: a CAS service ticket proves a login once; WeChat's OAuth codes are
-- exchanged once, and what they proved is remembered briefly so the second of
-- WeChat's double callbacks (or the back button) gets the page, not an error.

CREATE TABLE used_cas_tickets (
    -- SHA-256 of the ticket: a ticket is a bearer secret until it expires.
    ticket_hash TEXT PRIMARY KEY,
    used_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX used_cas_tickets_age ON used_cas_tickets (used_at);

CREATE TABLE oauth_codes (
    code_hash TEXT PRIMARY KEY,
    -- The state of the authorization that first brought the code: a second
    -- callback counts only from the browser that started it.
    state TEXT NOT NULL,
    -- NULL while the exchange is in flight, or when WeChat refused the code.
    openid TEXT,
    exchanged_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX oauth_codes_age ON oauth_codes (exchanged_at);
