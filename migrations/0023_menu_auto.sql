-- The automatic menu (MENU_AUTO=on): its one push, in flight or last made.
-- One row, so every instance's clock sees when the menu last went out (the
-- debounce) and a pending push is claimed once; the menu page shows it.
CREATE TABLE menu_auto_push (
    id           boolean PRIMARY KEY DEFAULT true CHECK (id),
    -- The menu JSON this attempt pushes.
    menu         text NOT NULL,
    attempted_at timestamptz NOT NULL,
    outcome      text NOT NULL CHECK (outcome IN ('pending', 'pushed', 'failed')),
    -- WeChat's refusal (or why the API was not reached), in words.
    error        text,
    -- Failures in a row: the wait before the next attempt doubles with each.
    failures     integer NOT NULL DEFAULT 0 CHECK (failures >= 0),
    finished_at  timestamptz
);
