-- A live QR: the ticket page shows a code that changes every 30 s, and the
-- door takes only the current and the previous one, so a screenshot passed
-- around a group chat gets no second person in.
ALTER TABLE activities ADD COLUMN live_qr boolean NOT NULL DEFAULT false;

-- The JS-SDK's jsapi_ticket (the WeChat scanner on the check-in page), shared
-- by every instance like the access token: WeChat rations fetches of it too.
CREATE TABLE wechat_jsapi_tickets (
    appid        text PRIMARY KEY,
    ticket       text NOT NULL,
    expires_at   timestamptz NOT NULL,
    refreshed_at timestamptz NOT NULL DEFAULT now()
);
