-- An owner deletes their org from the dashboard (issue 19): every row that
-- names it goes, and the deletion is recorded in org_deletions, at the
-- deployment's level: the org's random id (not its name), when, the
-- deleting user's id, and the rows removed per table (a JSON object).
-- The access log stays append-only, except that the rows of an org that
-- no longer exists may be deleted: removing an org whole deletes the org
-- first, then its log.

-- +goose Up
CREATE TABLE org_deletions (
    deleted_org_id TEXT    NOT NULL,
    at             INTEGER NOT NULL,
    by_user_id     TEXT    NOT NULL,
    rows           TEXT    NOT NULL
);

DROP TRIGGER access_log_no_delete;
-- +goose StatementBegin
CREATE TRIGGER access_log_no_delete BEFORE DELETE ON access_log
WHEN OLD.org_id = '' OR EXISTS (SELECT 1 FROM orgs WHERE id = OLD.org_id)
BEGIN
    SELECT RAISE(ABORT, 'access_log is append-only');
END;
-- +goose StatementEnd

-- +goose Down
DROP TRIGGER access_log_no_delete;
-- +goose StatementBegin
CREATE TRIGGER access_log_no_delete BEFORE DELETE ON access_log
BEGIN
    SELECT RAISE(ABORT, 'access_log is append-only');
END;
-- +goose StatementEnd
DROP TABLE org_deletions;
