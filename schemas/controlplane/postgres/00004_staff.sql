-- Staff access (DESIGN §11): org plans and the owner's break-glass switch,
-- staff accounts with a TOTP second factor, break-glass requests with
-- their approvals, and the append-only, hash-chained access log.
--
-- Staff work across orgs through two narrow paths: a transaction that
-- names the acting staff member in app.staff_id sees the break-glass
-- requests of every org (never their usage, members or invitations), and
-- codex_staff_orgs() returns each org's name, plan and fleet counts.

-- +goose Up
ALTER TABLE orgs ADD COLUMN plan TEXT NOT NULL DEFAULT 'free' CHECK (plan IN ('free', 'pro', 'enterprise'));
-- NULL leaves break-glass access to the plan's default.
ALTER TABLE orgs ADD COLUMN break_glass BOOLEAN;
CREATE INDEX orgs_name ON orgs (name);

-- Commands given an org's name find it before the org is known, as login
-- finds users by email: a transaction may read the orgs whose name it
-- names in app.org_name. It grants no write.
CREATE POLICY by_name ON orgs FOR SELECT
    USING (name = nullif(current_setting('app.org_name', true), ''));

-- Staff accounts belong to no org: not a tenant table.
CREATE TABLE staff (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    totp_secret BYTEA NOT NULL, -- sealed
    totp_step BIGINT NOT NULL DEFAULT 0,
    session_epoch BIGINT NOT NULL DEFAULT 0,
    created_at TIMESTAMPTZ NOT NULL,
    disabled_at TIMESTAMPTZ
);

CREATE TABLE access_requests (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs (id),
    staff_id TEXT NOT NULL REFERENCES staff (id),
    reason TEXT NOT NULL,
    duration_s BIGINT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'active', 'denied', 'revoked', 'expired')),
    requested_at TIMESTAMPTZ NOT NULL,
    granted_at TIMESTAMPTZ,
    expires_at TIMESTAMPTZ,
    ended_at TIMESTAMPTZ
);
CREATE INDEX access_requests_state ON access_requests (state, org_id);
-- A staff member has at most one open request per org, also when two
-- arrive at once.
CREATE UNIQUE INDEX access_requests_one_open ON access_requests (org_id, staff_id) WHERE state IN ('pending', 'active');

CREATE TABLE access_approvals (
    request_id TEXT NOT NULL REFERENCES access_requests (id),
    org_id TEXT NOT NULL REFERENCES orgs (id),
    staff_id TEXT NOT NULL REFERENCES staff (id),
    at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (request_id, staff_id)
);

-- One hash chain per org; org_id '' is the chain of staff events about no
-- org (sign-ins, disabled accounts).
CREATE TABLE access_log (
    org_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    at TIMESTAMPTZ NOT NULL,
    kind TEXT NOT NULL,
    staff_id TEXT NOT NULL,
    staff_email TEXT NOT NULL,
    request_id TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash BYTEA NOT NULL,
    hash BYTEA NOT NULL,
    PRIMARY KEY (org_id, seq)
);

ALTER TABLE access_requests ENABLE ROW LEVEL SECURITY;
ALTER TABLE access_requests FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON access_requests
    USING (org_id = current_setting('app.org_id', true))
    WITH CHECK (org_id = current_setting('app.org_id', true));
CREATE POLICY staff ON access_requests
    USING (nullif(current_setting('app.staff_id', true), '') IS NOT NULL)
    WITH CHECK (nullif(current_setting('app.staff_id', true), '') IS NOT NULL);

ALTER TABLE access_approvals ENABLE ROW LEVEL SECURITY;
ALTER TABLE access_approvals FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON access_approvals
    USING (org_id = current_setting('app.org_id', true))
    WITH CHECK (org_id = current_setting('app.org_id', true));
CREATE POLICY staff ON access_approvals
    USING (nullif(current_setting('app.staff_id', true), '') IS NOT NULL)
    WITH CHECK (nullif(current_setting('app.staff_id', true), '') IS NOT NULL);

-- The access log has read and append policies only: no policy allows an
-- update or a delete, the application role is granted neither (see
-- Migrate), and the trigger below refuses them to every role.
ALTER TABLE access_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE access_log FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_read ON access_log FOR SELECT
    USING (org_id <> '' AND org_id = current_setting('app.org_id', true));
CREATE POLICY tenant_append ON access_log FOR INSERT
    WITH CHECK (org_id <> '' AND org_id = current_setting('app.org_id', true));
CREATE POLICY staff_read ON access_log FOR SELECT
    USING (org_id = '' AND nullif(current_setting('app.staff_id', true), '') IS NOT NULL);
CREATE POLICY staff_append ON access_log FOR INSERT
    WITH CHECK (org_id = '' AND nullif(current_setting('app.staff_id', true), '') IS NOT NULL);

-- +goose StatementBegin
CREATE FUNCTION codex_access_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'access_log is append-only' USING ERRCODE = 'insufficient_privilege';
END
$$;
-- +goose StatementEnd
CREATE TRIGGER access_log_no_change BEFORE UPDATE OR DELETE ON access_log
    FOR EACH ROW EXECUTE FUNCTION codex_access_log_append_only();
CREATE TRIGGER access_log_no_truncate BEFORE TRUNCATE ON access_log
    FOR EACH STATEMENT EXECUTE FUNCTION codex_access_log_append_only();

-- codex_staff_orgs runs with the owner's rights, which read orgs and edges
-- through maintenance policies, and returns names, plans and counts only.
-- +goose StatementBegin
DO $$
BEGIN
    EXECUTE format('CREATE POLICY maintenance_read ON orgs FOR SELECT TO %I USING (true)', current_user);
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION codex_staff_orgs()
RETURNS TABLE (id text, name text, created_at timestamptz, plan text, break_glass boolean,
               edges bigint, sharing bigint, revoked bigint, last_seen timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT o.id, o.name, o.created_at, o.plan, o.break_glass,
           count(e.id) FILTER (WHERE e.revoked_at IS NULL),
           count(e.id) FILTER (WHERE e.revoked_at IS NULL AND e.sharing),
           count(e.id) FILTER (WHERE e.revoked_at IS NOT NULL),
           max(e.last_seen)
    FROM orgs o LEFT JOIN edges e ON e.org_id = o.id
    GROUP BY o.id
    ORDER BY o.name, o.id
$$;
-- +goose StatementEnd
REVOKE ALL ON FUNCTION codex_staff_orgs() FROM PUBLIC;

-- +goose Down
DROP FUNCTION codex_staff_orgs();
DROP POLICY maintenance_read ON orgs;
DROP TABLE access_log;
DROP FUNCTION codex_access_log_append_only();
DROP TABLE access_approvals;
DROP TABLE access_requests;
DROP TABLE staff;
DROP POLICY by_name ON orgs;
DROP INDEX orgs_name;
ALTER TABLE orgs DROP COLUMN break_glass;
ALTER TABLE orgs DROP COLUMN plan;
