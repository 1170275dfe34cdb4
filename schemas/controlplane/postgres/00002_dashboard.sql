-- Dashboard: session epochs, invitations, lookups by email and org.

-- +goose Up
ALTER TABLE users ADD COLUMN session_epoch BIGINT NOT NULL DEFAULT 0;
CREATE INDEX users_email ON users (email);
CREATE INDEX enroll_tokens_org ON enroll_tokens (org_id, created_at);

-- Login runs before the org is known: a transaction may read the users
-- whose email it names in app.login_email. It grants no write.
CREATE POLICY login ON users FOR SELECT
    USING (email = nullif(current_setting('app.login_email', true), ''));

-- Only the SHA-256 of an invitation link's token is stored.
CREATE TABLE invites (
    hash BYTEA PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs (id),
    email TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'viewer')),
    created_by TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    used_at TIMESTAMPTZ
);
CREATE INDEX invites_org ON invites (org_id);

ALTER TABLE invites ENABLE ROW LEVEL SECURITY;
ALTER TABLE invites FORCE ROW LEVEL SECURITY;
-- Accepting runs before the org is known, as enrollment does: only the
-- holder of the link can compute the hash named in app.invite_hash.
CREATE POLICY tenant ON invites
    USING (org_id = current_setting('app.org_id', true)
        OR hash = decode(nullif(current_setting('app.invite_hash', true), ''), 'hex'))
    WITH CHECK (org_id = current_setting('app.org_id', true)
        OR hash = decode(nullif(current_setting('app.invite_hash', true), ''), 'hex'));

-- +goose Down
DROP TABLE invites;
DROP POLICY login ON users;
DROP INDEX enroll_tokens_org;
DROP INDEX users_email;
ALTER TABLE users DROP COLUMN session_epoch;
