-- Dashboard: session epochs, invitations, lookups by email and org.

-- +goose Up
ALTER TABLE users ADD COLUMN session_epoch INTEGER NOT NULL DEFAULT 0;
CREATE INDEX users_email ON users (email);
CREATE INDEX enroll_tokens_org ON enroll_tokens (org_id, created_at);

-- Only the SHA-256 of an invitation link's token is stored.
CREATE TABLE invites (
    hash BLOB PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs (id),
    email TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'viewer')),
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER
);
CREATE INDEX invites_org ON invites (org_id);

-- +goose Down
DROP TABLE invites;
DROP INDEX enroll_tokens_org;
DROP INDEX users_email;
ALTER TABLE users DROP COLUMN session_epoch;
