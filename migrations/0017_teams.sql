-- Teams and roles (README "Teams and roles"): every activity belongs to a team
-- (社团/部门); an `organizer` account manages only its teams' activities, an
-- `admin` everything. Existing activities move to one default team and every
-- existing account stays an admin.

CREATE TABLE teams (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text NOT NULL UNIQUE CHECK (char_length(name) BETWEEN 1 AND 64),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The first row of a new identity column: id 1, which the code names
-- `accounts::DEFAULT_TEAM` and the column default below uses.
INSERT INTO teams (name) VALUES ('默认团队');

-- The default puts every activity made without naming a team (the demo, older
-- scripts, the benchmark) in the default team, and moves the existing ones there.
ALTER TABLE activities ADD COLUMN team_id bigint NOT NULL DEFAULT 1 REFERENCES teams (id);
CREATE INDEX activities_team ON activities (team_id);

ALTER TABLE admin_users
    ADD COLUMN role text NOT NULL DEFAULT 'admin' CHECK (role IN ('admin', 'organizer')),
    -- Set: the account can no longer log in and its sessions are gone.
    ADD COLUMN disabled_at timestamptz;

CREATE TABLE team_members (
    admin_id bigint NOT NULL REFERENCES admin_users (id) ON DELETE CASCADE,
    team_id  bigint NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    PRIMARY KEY (admin_id, team_id)
);
CREATE INDEX team_members_team ON team_members (team_id);
