-- The edge's production store on Postgres: the same tables as the SQLite
-- store (schemas/edge/sqlite), under forced row-level security.
--
-- Run by the owner role (`codex-edge migrate`). The application role that
-- `serve` connects as is read from the session setting codex.app_role,
-- which the migrator sets from CODEX_DATABASE_APP_ROLE; it owns nothing and
-- is granted only the row privileges the store uses.
--
-- Tenant isolation: every table carrying org_id, and orgs keyed on id, has
-- ENABLE + FORCE row-level security with a policy on
-- current_setting('app.org_id', true), which the store sets with
-- set_config(..., true) right after BEGIN. With no org set nothing is
-- visible and nothing can be written. The few lookups that run before the
-- org is known go through the SECURITY DEFINER functions at the end.
--
-- Ids and names are COLLATE "C" so that ordering is byte order, as in
-- SQLite, whatever the database's default collation. Times are timestamptz
-- (microseconds); durations are integer nanoseconds.

-- +goose Up
CREATE TABLE orgs (
    id                 TEXT COLLATE "C" NOT NULL PRIMARY KEY CHECK (id <> ''),
    name               TEXT COLLATE "C" NOT NULL UNIQUE CHECK (name <> ''),
    created_at         TIMESTAMPTZ NOT NULL,
    -- Sealed by the org's data key; NULL until the first request.
    fingerprint_secret BYTEA
);

-- Per-org data keys, stored only wrapped by a master key (schemas/crypto).
CREATE TABLE data_keys (
    org_id         TEXT COLLATE "C" NOT NULL REFERENCES orgs (id),
    id             TEXT COLLATE "C" NOT NULL,
    generation     INTEGER NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('active', 'retired')),
    master_ref     TEXT NOT NULL,
    master_version TEXT NOT NULL,
    wrapped        BYTEA NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL,
    rewrapped_at   TIMESTAMPTZ,
    PRIMARY KEY (org_id, id),
    UNIQUE (org_id, generation)
);

CREATE TABLE api_keys (
    id         TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    org_id     TEXT COLLATE "C" NOT NULL REFERENCES orgs (id),
    name       TEXT NOT NULL,
    prefix     TEXT NOT NULL,
    hash       BYTEA NOT NULL UNIQUE CHECK (octet_length(hash) = 32),
    state      TEXT NOT NULL CHECK (state IN ('active', 'revoked')),
    created_at TIMESTAMPTZ NOT NULL,
    revoked_at TIMESTAMPTZ
);
CREATE INDEX api_keys_org ON api_keys (org_id, created_at, id);

CREATE TABLE provider_configs (
    org_id      TEXT COLLATE "C" NOT NULL REFERENCES orgs (id),
    provider    TEXT COLLATE "C" NOT NULL CHECK (provider IN ('openai', 'anthropic')),
    base_url    TEXT NOT NULL,
    api_key_env TEXT NOT NULL,
    -- The provider key sealed by the org's data key, or NULL when it comes
    -- from the environment variable api_key_env.
    sealed_key  BYTEA,
    updated_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (org_id, provider)
);

-- Token counts and cost are NULL when the provider did not report them.
CREATE TABLE requests (
    id                  TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    org_id              TEXT COLLATE "C" NOT NULL REFERENCES orgs (id),
    at                  TIMESTAMPTZ NOT NULL,
    key_id              TEXT NOT NULL,
    provider            TEXT NOT NULL,
    endpoint            TEXT NOT NULL,
    model               TEXT NOT NULL,
    stream              BOOLEAN NOT NULL,
    input_tokens        BIGINT,
    cached_input_tokens BIGINT,
    cache_write_tokens  BIGINT,
    output_tokens       BIGINT,
    reasoning_tokens    BIGINT,
    cost_nano_usd       BIGINT,
    saved_nano_usd      BIGINT NOT NULL,
    latency_ns          BIGINT NOT NULL,
    upstream_latency_ns BIGINT NOT NULL,
    status              INTEGER NOT NULL,
    cache               TEXT NOT NULL,
    fingerprint         TEXT NOT NULL,
    memory_id           TEXT NOT NULL
);
CREATE INDEX requests_org_time ON requests (org_id, at, id);

-- The change feed, written in the transaction of the change it records.
-- Writers serialise on an advisory lock before taking a seq, so seqs
-- become visible in order and a poller that has seen seq n never misses a
-- smaller one committed later. Every insert notifies codex_edge_changes at
-- commit, so other instances read the feed at once instead of at their
-- next poll.
CREATE TABLE changes (
    seq    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id TEXT COLLATE "C" NOT NULL,
    kind   TEXT NOT NULL CHECK (kind IN ('key', 'provider', 'org', 'dek')),
    ref    TEXT NOT NULL,
    at     TIMESTAMPTZ NOT NULL
);

-- +goose StatementBegin
CREATE FUNCTION codex_notify_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('codex_edge_changes', '');
    RETURN NULL;
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER changes_notify AFTER INSERT ON changes
    FOR EACH STATEMENT EXECUTE FUNCTION codex_notify_changes();

-- Row-level security: one tenant policy per table.
ALTER TABLE orgs ENABLE ROW LEVEL SECURITY;
ALTER TABLE orgs FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON orgs
    USING (id = current_setting('app.org_id', true))
    WITH CHECK (id = current_setting('app.org_id', true));

ALTER TABLE data_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE data_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON data_keys
    USING (org_id = current_setting('app.org_id', true))
    WITH CHECK (org_id = current_setting('app.org_id', true));

ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON api_keys
    USING (org_id = current_setting('app.org_id', true))
    WITH CHECK (org_id = current_setting('app.org_id', true));

ALTER TABLE provider_configs ENABLE ROW LEVEL SECURITY;
ALTER TABLE provider_configs FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON provider_configs
    USING (org_id = current_setting('app.org_id', true))
    WITH CHECK (org_id = current_setting('app.org_id', true));

ALTER TABLE requests ENABLE ROW LEVEL SECURITY;
ALTER TABLE requests FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON requests
    USING (org_id = current_setting('app.org_id', true))
    WITH CHECK (org_id = current_setting('app.org_id', true));

ALTER TABLE changes ENABLE ROW LEVEL SECURITY;
ALTER TABLE changes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON changes
    USING (org_id = current_setting('app.org_id', true))
    WITH CHECK (org_id = current_setting('app.org_id', true));

-- The lookups that run before the org is known. They are SECURITY DEFINER
-- functions owned by the owner role; FORCE makes the owner subject to the
-- tenant policies too, so each table they read has a read-only policy for
-- the owner role (CURRENT_USER here is the migrating owner), which is the
-- role these functions run as. The application role cannot assume it.
CREATE POLICY definer_read ON orgs FOR SELECT TO CURRENT_USER USING (true);
CREATE POLICY definer_read ON api_keys FOR SELECT TO CURRENT_USER USING (true);
CREATE POLICY definer_read ON data_keys FOR SELECT TO CURRENT_USER USING (true);
CREATE POLICY definer_read ON changes FOR SELECT TO CURRENT_USER USING (true);

-- codex_key_by_hash: the key whose secret hashes to h (the request path's
-- first lookup), or no row. Returns the key's own non-secret fields only.
-- +goose StatementBegin
CREATE FUNCTION codex_key_by_hash(h BYTEA)
RETURNS TABLE (id TEXT, org_id TEXT, name TEXT, prefix TEXT, hash BYTEA, state TEXT,
               created_at TIMESTAMPTZ, revoked_at TIMESTAMPTZ)
LANGUAGE sql STABLE SECURITY DEFINER AS $$
    SELECT k.id, k.org_id, k.name, k.prefix, k.hash, k.state, k.created_at, k.revoked_at
    FROM api_keys k WHERE k.hash = h
$$;
-- +goose StatementEnd

-- codex_key_by_id: one key by its id (keys revoke ID), or no row.
-- +goose StatementBegin
CREATE FUNCTION codex_key_by_id(key_id TEXT)
RETURNS TABLE (id TEXT, org_id TEXT, name TEXT, prefix TEXT, hash BYTEA, state TEXT,
               created_at TIMESTAMPTZ, revoked_at TIMESTAMPTZ)
LANGUAGE sql STABLE SECURITY DEFINER AS $$
    SELECT k.id, k.org_id, k.name, k.prefix, k.hash, k.state, k.created_at, k.revoked_at
    FROM api_keys k WHERE k.id = key_id
$$;
-- +goose StatementEnd

-- codex_orgs: every org's id, name and creation time (orgs list, finding an
-- org by name); never its fingerprint secret.
-- +goose StatementBegin
CREATE FUNCTION codex_orgs()
RETURNS TABLE (id TEXT, name TEXT, created_at TIMESTAMPTZ)
LANGUAGE sql STABLE SECURITY DEFINER AS $$
    SELECT o.id, o.name, o.created_at FROM orgs o ORDER BY o.name, o.id
$$;
-- +goose StatementEnd

-- codex_changes: up to lim change-feed entries after seq, oldest first
-- (what changed, not how: seq, org id, kind and a key id or provider name).
-- +goose StatementBegin
CREATE FUNCTION codex_changes(after_seq BIGINT, lim INTEGER)
RETURNS TABLE (seq BIGINT, org_id TEXT, kind TEXT, ref TEXT)
LANGUAGE sql STABLE SECURITY DEFINER AS $$
    SELECT c.seq, c.org_id, c.kind, c.ref FROM changes c
    WHERE c.seq > after_seq ORDER BY c.seq LIMIT lim
$$;
-- +goose StatementEnd

-- codex_dek_orgs: the ids of the orgs that have data keys (crypto rewrap
-- and status), nothing about the keys.
-- +goose StatementBegin
CREATE FUNCTION codex_dek_orgs()
RETURNS TABLE (org_id TEXT)
LANGUAGE sql STABLE SECURITY DEFINER AS $$
    SELECT DISTINCT d.org_id FROM data_keys d ORDER BY d.org_id
$$;
-- +goose StatementEnd

-- Privileges. search_path is pinned on every SECURITY DEFINER function
-- (built-ins first, this schema, temporary objects last) so that nothing
-- the caller creates can stand in for what they reference.
-- +goose StatementBegin
DO $$
DECLARE
    app    TEXT := current_setting('codex.app_role', true);
    schema TEXT := current_schema();
    f      TEXT;
BEGIN
    IF app IS NULL OR app = '' THEN
        RAISE EXCEPTION 'codex.app_role is not set: run migrations with codex-edge migrate';
    END IF;
    IF app = current_user THEN
        RAISE EXCEPTION 'the application role % must not be the owner role that runs migrations', app;
    END IF;
    FOREACH f IN ARRAY ARRAY['codex_key_by_hash(bytea)', 'codex_key_by_id(text)', 'codex_orgs()',
                             'codex_changes(bigint, integer)', 'codex_dek_orgs()'] LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = pg_catalog, %I, pg_temp', f, schema);
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', f, app);
    END LOOP;
    IF NOT has_schema_privilege(app, schema, 'USAGE') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', schema, app);
    END IF;
    EXECUTE format('GRANT SELECT, INSERT ON orgs TO %I', app);
    EXECUTE format('GRANT UPDATE (fingerprint_secret) ON orgs TO %I', app);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON data_keys TO %I', app);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON api_keys TO %I', app);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON provider_configs TO %I', app);
    EXECUTE format('GRANT SELECT, INSERT ON requests TO %I', app);
    EXECUTE format('GRANT INSERT ON changes TO %I', app);
    -- serve reads the schema version to refuse a database not migrated yet.
    EXECUTE format('GRANT SELECT ON goose_db_version TO %I', app);
END;
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION codex_dek_orgs();
DROP FUNCTION codex_changes(BIGINT, INTEGER);
DROP FUNCTION codex_orgs();
DROP FUNCTION codex_key_by_id(TEXT);
DROP FUNCTION codex_key_by_hash(BYTEA);
DROP TABLE changes;
DROP FUNCTION codex_notify_changes();
DROP TABLE requests;
DROP TABLE provider_configs;
DROP TABLE api_keys;
DROP TABLE data_keys;
DROP TABLE orgs;
