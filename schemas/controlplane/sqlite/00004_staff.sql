-- Staff access (DESIGN §11): org plans and the owner's break-glass switch,
-- staff accounts with a TOTP second factor, break-glass requests with
-- their approvals, and the append-only, hash-chained access log.

-- +goose Up
ALTER TABLE orgs ADD COLUMN plan TEXT NOT NULL DEFAULT 'free' CHECK (plan IN ('free', 'pro', 'enterprise'));
-- NULL leaves break-glass access to the plan's default.
ALTER TABLE orgs ADD COLUMN break_glass INTEGER;
CREATE INDEX orgs_name ON orgs (name);

CREATE TABLE staff (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    totp_secret BLOB NOT NULL, -- sealed
    totp_step INTEGER NOT NULL DEFAULT 0,
    session_epoch INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    disabled_at INTEGER
);

CREATE TABLE access_requests (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs (id),
    staff_id TEXT NOT NULL REFERENCES staff (id),
    reason TEXT NOT NULL,
    duration_s INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'active', 'denied', 'revoked', 'expired')),
    requested_at INTEGER NOT NULL,
    granted_at INTEGER,
    expires_at INTEGER,
    ended_at INTEGER
);
CREATE INDEX access_requests_state ON access_requests (state, org_id);
-- A staff member has at most one open request per org, also when two
-- arrive at once.
CREATE UNIQUE INDEX access_requests_one_open ON access_requests (org_id, staff_id) WHERE state IN ('pending', 'active');

CREATE TABLE access_approvals (
    request_id TEXT NOT NULL REFERENCES access_requests (id),
    org_id TEXT NOT NULL REFERENCES orgs (id),
    staff_id TEXT NOT NULL REFERENCES staff (id),
    at INTEGER NOT NULL,
    PRIMARY KEY (request_id, staff_id)
);

-- One hash chain per org; org_id '' is the chain of staff events about no
-- org (sign-ins, disabled accounts).
CREATE TABLE access_log (
    org_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    staff_id TEXT NOT NULL,
    staff_email TEXT NOT NULL,
    request_id TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash BLOB NOT NULL,
    hash BLOB NOT NULL,
    PRIMARY KEY (org_id, seq)
);

-- Rows are never changed or removed, by anyone who uses this database.
-- +goose StatementBegin
CREATE TRIGGER access_log_no_update BEFORE UPDATE ON access_log
BEGIN
    SELECT RAISE(ABORT, 'access_log is append-only');
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER access_log_no_delete BEFORE DELETE ON access_log
BEGIN
    SELECT RAISE(ABORT, 'access_log is append-only');
END;
-- +goose StatementEnd

-- +goose Down
DROP TRIGGER access_log_no_delete;
DROP TRIGGER access_log_no_update;
DROP TABLE access_log;
DROP TABLE access_approvals;
DROP TABLE access_requests;
DROP TABLE staff;
DROP INDEX orgs_name;
ALTER TABLE orgs DROP COLUMN break_glass;
ALTER TABLE orgs DROP COLUMN plan;
