-- Control plane schema: accounts, edges, enrollment and usage at three resolutions.
-- Times are timestamptz.

-- +goose Up
CREATE TABLE orgs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs (id),
    email TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'viewer')),
    password_hash TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    UNIQUE (org_id, email)
);

-- Only the SHA-256 of a token is stored; used_at makes it single use.
CREATE TABLE enroll_tokens (
    hash BYTEA PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs (id),
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    used_at TIMESTAMPTZ,
    edge_id TEXT
);

CREATE TABLE edges (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs (id),
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    public_key TEXT NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL,
    last_seen TIMESTAMPTZ,
    sharing BOOLEAN NOT NULL DEFAULT FALSE,
    revoked_at TIMESTAMPTZ
);
CREATE INDEX edges_org ON edges (org_id);

-- One row per batch received: the primary key makes ingest idempotent.
CREATE TABLE usage_batches (
    edge_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    org_id TEXT NOT NULL REFERENCES orgs (id),
    window_start TIMESTAMPTZ NOT NULL,
    window_end TIMESTAMPTZ NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    row_count INTEGER NOT NULL,
    PRIMARY KEY (edge_id, seq)
);
CREATE INDEX usage_batches_org_received ON usage_batches (org_id, received_at);

CREATE TABLE usage_minute (
    org_id TEXT NOT NULL REFERENCES orgs (id),
    ts TIMESTAMPTZ NOT NULL,
    edge_id TEXT NOT NULL,
    workspace TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    key_ref TEXT NOT NULL,
    cache_status TEXT NOT NULL,
    status_class TEXT NOT NULL,
    requests BIGINT NOT NULL DEFAULT 0,
    input BIGINT NOT NULL DEFAULT 0,
    input_unknown BIGINT NOT NULL DEFAULT 0,
    cached_input BIGINT NOT NULL DEFAULT 0,
    cached_input_unknown BIGINT NOT NULL DEFAULT 0,
    cache_write BIGINT NOT NULL DEFAULT 0,
    cache_write_unknown BIGINT NOT NULL DEFAULT 0,
    output BIGINT NOT NULL DEFAULT 0,
    output_unknown BIGINT NOT NULL DEFAULT 0,
    reasoning BIGINT NOT NULL DEFAULT 0,
    reasoning_unknown BIGINT NOT NULL DEFAULT 0,
    cost_nano_usd BIGINT NOT NULL DEFAULT 0,
    cost_unknown BIGINT NOT NULL DEFAULT 0,
    saved_nano_usd BIGINT NOT NULL DEFAULT 0,
    lat_00 BIGINT NOT NULL DEFAULT 0,
    lat_01 BIGINT NOT NULL DEFAULT 0,
    lat_02 BIGINT NOT NULL DEFAULT 0,
    lat_03 BIGINT NOT NULL DEFAULT 0,
    lat_04 BIGINT NOT NULL DEFAULT 0,
    lat_05 BIGINT NOT NULL DEFAULT 0,
    lat_06 BIGINT NOT NULL DEFAULT 0,
    lat_07 BIGINT NOT NULL DEFAULT 0,
    lat_08 BIGINT NOT NULL DEFAULT 0,
    lat_09 BIGINT NOT NULL DEFAULT 0,
    lat_10 BIGINT NOT NULL DEFAULT 0,
    lat_11 BIGINT NOT NULL DEFAULT 0,
    lat_12 BIGINT NOT NULL DEFAULT 0,
    lat_13 BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (org_id, ts, edge_id, workspace, provider, model, key_ref, cache_status, status_class)
);

CREATE TABLE usage_hour (
    org_id TEXT NOT NULL REFERENCES orgs (id),
    ts TIMESTAMPTZ NOT NULL,
    edge_id TEXT NOT NULL,
    workspace TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    key_ref TEXT NOT NULL,
    cache_status TEXT NOT NULL,
    status_class TEXT NOT NULL,
    requests BIGINT NOT NULL DEFAULT 0,
    input BIGINT NOT NULL DEFAULT 0,
    input_unknown BIGINT NOT NULL DEFAULT 0,
    cached_input BIGINT NOT NULL DEFAULT 0,
    cached_input_unknown BIGINT NOT NULL DEFAULT 0,
    cache_write BIGINT NOT NULL DEFAULT 0,
    cache_write_unknown BIGINT NOT NULL DEFAULT 0,
    output BIGINT NOT NULL DEFAULT 0,
    output_unknown BIGINT NOT NULL DEFAULT 0,
    reasoning BIGINT NOT NULL DEFAULT 0,
    reasoning_unknown BIGINT NOT NULL DEFAULT 0,
    cost_nano_usd BIGINT NOT NULL DEFAULT 0,
    cost_unknown BIGINT NOT NULL DEFAULT 0,
    saved_nano_usd BIGINT NOT NULL DEFAULT 0,
    lat_00 BIGINT NOT NULL DEFAULT 0,
    lat_01 BIGINT NOT NULL DEFAULT 0,
    lat_02 BIGINT NOT NULL DEFAULT 0,
    lat_03 BIGINT NOT NULL DEFAULT 0,
    lat_04 BIGINT NOT NULL DEFAULT 0,
    lat_05 BIGINT NOT NULL DEFAULT 0,
    lat_06 BIGINT NOT NULL DEFAULT 0,
    lat_07 BIGINT NOT NULL DEFAULT 0,
    lat_08 BIGINT NOT NULL DEFAULT 0,
    lat_09 BIGINT NOT NULL DEFAULT 0,
    lat_10 BIGINT NOT NULL DEFAULT 0,
    lat_11 BIGINT NOT NULL DEFAULT 0,
    lat_12 BIGINT NOT NULL DEFAULT 0,
    lat_13 BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (org_id, ts, edge_id, workspace, provider, model, key_ref, cache_status, status_class)
);

CREATE TABLE usage_day (
    org_id TEXT NOT NULL REFERENCES orgs (id),
    ts TIMESTAMPTZ NOT NULL,
    edge_id TEXT NOT NULL,
    workspace TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    key_ref TEXT NOT NULL,
    cache_status TEXT NOT NULL,
    status_class TEXT NOT NULL,
    requests BIGINT NOT NULL DEFAULT 0,
    input BIGINT NOT NULL DEFAULT 0,
    input_unknown BIGINT NOT NULL DEFAULT 0,
    cached_input BIGINT NOT NULL DEFAULT 0,
    cached_input_unknown BIGINT NOT NULL DEFAULT 0,
    cache_write BIGINT NOT NULL DEFAULT 0,
    cache_write_unknown BIGINT NOT NULL DEFAULT 0,
    output BIGINT NOT NULL DEFAULT 0,
    output_unknown BIGINT NOT NULL DEFAULT 0,
    reasoning BIGINT NOT NULL DEFAULT 0,
    reasoning_unknown BIGINT NOT NULL DEFAULT 0,
    cost_nano_usd BIGINT NOT NULL DEFAULT 0,
    cost_unknown BIGINT NOT NULL DEFAULT 0,
    saved_nano_usd BIGINT NOT NULL DEFAULT 0,
    lat_00 BIGINT NOT NULL DEFAULT 0,
    lat_01 BIGINT NOT NULL DEFAULT 0,
    lat_02 BIGINT NOT NULL DEFAULT 0,
    lat_03 BIGINT NOT NULL DEFAULT 0,
    lat_04 BIGINT NOT NULL DEFAULT 0,
    lat_05 BIGINT NOT NULL DEFAULT 0,
    lat_06 BIGINT NOT NULL DEFAULT 0,
    lat_07 BIGINT NOT NULL DEFAULT 0,
    lat_08 BIGINT NOT NULL DEFAULT 0,
    lat_09 BIGINT NOT NULL DEFAULT 0,
    lat_10 BIGINT NOT NULL DEFAULT 0,
    lat_11 BIGINT NOT NULL DEFAULT 0,
    lat_12 BIGINT NOT NULL DEFAULT 0,
    lat_13 BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (org_id, ts, edge_id, workspace, provider, model, key_ref, cache_status, status_class)
);

-- Row-level security: every tenant table, forced, keyed on the transaction's
-- app.org_id. A transaction that set no org sees and writes nothing.

ALTER TABLE orgs ENABLE ROW LEVEL SECURITY;
ALTER TABLE orgs FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON orgs
    USING (id = current_setting('app.org_id', true))
    WITH CHECK (id = current_setting('app.org_id', true));

ALTER TABLE users ENABLE ROW LEVEL SECURITY;
ALTER TABLE users FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON users
    USING (org_id = current_setting('app.org_id', true))
    WITH CHECK (org_id = current_setting('app.org_id', true));

ALTER TABLE enroll_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE enroll_tokens FORCE ROW LEVEL SECURITY;
-- Redemption runs before the org is known: a transaction may see the one
-- token whose hash it names in app.enroll_hash, which only the holder of the
-- token can compute.
CREATE POLICY tenant ON enroll_tokens
    USING (org_id = current_setting('app.org_id', true)
        OR hash = decode(nullif(current_setting('app.enroll_hash', true), ''), 'hex'))
    WITH CHECK (org_id = current_setting('app.org_id', true)
        OR hash = decode(nullif(current_setting('app.enroll_hash', true), ''), 'hex'));

ALTER TABLE edges ENABLE ROW LEVEL SECURITY;
ALTER TABLE edges FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON edges
    USING (org_id = current_setting('app.org_id', true))
    WITH CHECK (org_id = current_setting('app.org_id', true));

ALTER TABLE usage_batches ENABLE ROW LEVEL SECURITY;
ALTER TABLE usage_batches FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON usage_batches
    USING (org_id = current_setting('app.org_id', true))
    WITH CHECK (org_id = current_setting('app.org_id', true));

ALTER TABLE usage_minute ENABLE ROW LEVEL SECURITY;
ALTER TABLE usage_minute FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON usage_minute
    USING (org_id = current_setting('app.org_id', true))
    WITH CHECK (org_id = current_setting('app.org_id', true));

ALTER TABLE usage_hour ENABLE ROW LEVEL SECURITY;
ALTER TABLE usage_hour FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON usage_hour
    USING (org_id = current_setting('app.org_id', true))
    WITH CHECK (org_id = current_setting('app.org_id', true));

ALTER TABLE usage_day ENABLE ROW LEVEL SECURITY;
ALTER TABLE usage_day FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON usage_day
    USING (org_id = current_setting('app.org_id', true))
    WITH CHECK (org_id = current_setting('app.org_id', true));

-- Maintenance: retention runs across orgs, so it cannot go through the
-- tenant policies. It has one narrow path: codex_prune, run with the
-- owner's rights, and policies that let only the owner (the role running
-- these migrations) delete old usage and mark silent edges.
-- +goose StatementBegin
DO $$
BEGIN
    EXECUTE format('CREATE POLICY maintenance_read ON usage_minute FOR SELECT TO %I USING (true)', current_user);
    EXECUTE format('CREATE POLICY maintenance ON usage_minute FOR DELETE TO %I USING (true)', current_user);
    EXECUTE format('CREATE POLICY maintenance_read ON usage_hour FOR SELECT TO %I USING (true)', current_user);
    EXECUTE format('CREATE POLICY maintenance ON usage_hour FOR DELETE TO %I USING (true)', current_user);
    EXECUTE format('CREATE POLICY maintenance_read ON usage_day FOR SELECT TO %I USING (true)', current_user);
    EXECUTE format('CREATE POLICY maintenance ON usage_day FOR DELETE TO %I USING (true)', current_user);
    EXECUTE format('CREATE POLICY maintenance_read ON usage_batches FOR SELECT TO %I USING (true)', current_user);
    EXECUTE format('CREATE POLICY maintenance ON usage_batches FOR DELETE TO %I USING (true)', current_user);
    EXECUTE format('CREATE POLICY maintenance_read ON edges FOR SELECT TO %I USING (true)', current_user);
    EXECUTE format('CREATE POLICY maintenance ON edges FOR UPDATE TO %I USING (true) WITH CHECK (true)', current_user);
END
$$;
-- +goose StatementEnd

-- The caller's clock can only make pruning keep more (LEAST with the
-- server's), and retention has floors, so the application role cannot use
-- this to wipe other orgs' data.
-- +goose StatementBegin
CREATE FUNCTION codex_prune(p_now timestamptz, keep_minutes interval, keep_hours interval, keep_days interval)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    t timestamptz := LEAST(p_now, now());
BEGIN
    IF keep_minutes < interval '1 day' OR keep_hours < keep_minutes OR keep_days < keep_hours THEN
        RAISE EXCEPTION 'codex_prune: retention too short';
    END IF;
    DELETE FROM usage_minute WHERE ts < t - keep_minutes;
    DELETE FROM usage_hour WHERE ts < t - keep_hours;
    DELETE FROM usage_day WHERE ts < t - keep_days;
    DELETE FROM usage_batches WHERE window_start < t - keep_days;
    UPDATE edges SET sharing = FALSE WHERE sharing AND last_seen < t - interval '10 minutes';
END
$$;
-- +goose StatementEnd
REVOKE ALL ON FUNCTION codex_prune(timestamptz, interval, interval, interval) FROM PUBLIC;

-- +goose Down
DROP FUNCTION codex_prune(timestamptz, interval, interval, interval);
DROP TABLE usage_day;
DROP TABLE usage_hour;
DROP TABLE usage_minute;
DROP TABLE usage_batches;
DROP TABLE edges;
DROP TABLE enroll_tokens;
DROP TABLE users;
DROP TABLE orgs;
