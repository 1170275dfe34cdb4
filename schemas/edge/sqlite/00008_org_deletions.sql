-- codex-edge orgs delete removes an org and every row naming it; the
-- record of the deletion is kept here, at the deployment's level, because
-- the org's own audit chain is deleted with it. deleted_org_id is the
-- org's random id (not its name); rows is a JSON object of table → rows
-- removed.

-- +goose Up
CREATE TABLE org_deletions (
    deleted_org_id TEXT    NOT NULL,
    at             INTEGER NOT NULL,
    actor          TEXT    NOT NULL,
    via            TEXT    NOT NULL,
    rows           TEXT    NOT NULL
);

-- +goose Down
DROP TABLE org_deletions;
