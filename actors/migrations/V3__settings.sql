-- Service-wide settings (version 3): the PBX identity pinned at its first login when
-- app.object is unset, and the addresses that logged in before (their reserve of login slots
-- survives a restart). Shared by every instance on the database.
CREATE TABLE settings (
    key   text PRIMARY KEY,
    value bytea NOT NULL
);
