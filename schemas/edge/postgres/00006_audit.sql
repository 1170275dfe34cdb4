-- The audit log (DESIGN §10): each org's levels, and each org's events as
-- one hash chain.
--
-- audit_heads holds each org's chain head (last seq and hash). A writer,
-- on whichever edge, locks its org's head row (SELECT … FOR UPDATE) before
-- it appends, so the writers of one org take turns and the chain stays one
-- line across any number of edges, while orgs never wait for each other.
-- A sequence would not do: its values are handed out outside the
-- transaction, so a rolled-back append would leave a gap and two appends
-- could commit in the other order than their seqs.
--
-- audit_events.meta is the event's metadata as written by the edge: the
-- bytes the chain hashes, never re-encoded. The chain covers meta and the
-- digests, not content, so the application role may clear content (shred,
-- retention) but may neither delete an event nor change anything else.

-- +goose Up
CREATE TABLE audit_settings (
    org_id     TEXT COLLATE "C" NOT NULL REFERENCES orgs (id),
    key_id     TEXT COLLATE "C" NOT NULL, -- '' for the org's own level
    level      TEXT NOT NULL CHECK (level IN ('none', 'hash', 'full')),
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (org_id, key_id)
);

CREATE TABLE audit_heads (
    org_id TEXT COLLATE "C" NOT NULL PRIMARY KEY REFERENCES orgs (id),
    seq    BIGINT NOT NULL CHECK (seq >= 0),
    hash   BYTEA NOT NULL CHECK (octet_length(hash) = 32)
);

CREATE TABLE audit_events (
    org_id          TEXT COLLATE "C" NOT NULL REFERENCES orgs (id),
    seq             BIGINT NOT NULL CHECK (seq > 0),
    id              TEXT COLLATE "C" NOT NULL UNIQUE CHECK (id <> ''),
    at              TIMESTAMPTZ NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('admin', 'request')),
    meta            TEXT NOT NULL,
    request_digest  BYTEA,
    response_digest BYTEA,
    -- Sealed by the org's data key (purpose audit, record key id) at level
    -- full; NULL otherwise and once removed.
    content         BYTEA,
    content_removed TEXT NOT NULL DEFAULT '' CHECK (content_removed IN ('', 'retention', 'shred')),
    prev_hash       BYTEA NOT NULL CHECK (octet_length(prev_hash) = 32),
    hash            BYTEA NOT NULL CHECK (octet_length(hash) = 32),
    PRIMARY KEY (org_id, seq)
);
CREATE INDEX audit_events_org_time ON audit_events (org_id, at);

ALTER TABLE audit_settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_settings FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON audit_settings
    USING (org_id = current_setting('app.org_id', true))
    WITH CHECK (org_id = current_setting('app.org_id', true));

ALTER TABLE audit_heads ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_heads FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON audit_heads
    USING (org_id = current_setting('app.org_id', true))
    WITH CHECK (org_id = current_setting('app.org_id', true));

ALTER TABLE audit_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON audit_events
    USING (org_id = current_setting('app.org_id', true))
    WITH CHECK (org_id = current_setting('app.org_id', true));

-- codex_audit_event_org: the org of one audit event (audit show EVENT_ID),
-- or no row; nothing else about it.
CREATE POLICY definer_read ON audit_events FOR SELECT TO CURRENT_USER USING (true);
-- +goose StatementBegin
CREATE FUNCTION codex_audit_event_org(event_id TEXT)
RETURNS TABLE (org_id TEXT)
LANGUAGE sql STABLE SECURITY DEFINER AS $$
    SELECT e.org_id FROM audit_events e WHERE e.id = event_id
$$;
-- +goose StatementEnd

-- +goose StatementBegin
DO $$
DECLARE
    app    TEXT := current_setting('codex.app_role', true);
    schema TEXT := current_schema();
BEGIN
    IF app IS NULL OR app = '' THEN
        RAISE EXCEPTION 'codex.app_role is not set: run migrations with codex-edge migrate';
    END IF;
    EXECUTE format('ALTER FUNCTION codex_audit_event_org(text) SET search_path = pg_catalog, %I, pg_temp', schema);
    REVOKE ALL ON FUNCTION codex_audit_event_org(text) FROM PUBLIC;
    EXECUTE format('GRANT EXECUTE ON FUNCTION codex_audit_event_org(text) TO %I', app);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON audit_settings TO %I', app);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON audit_heads TO %I', app);
    EXECUTE format('GRANT SELECT, INSERT ON audit_events TO %I', app);
    EXECUTE format('GRANT UPDATE (content, content_removed) ON audit_events TO %I', app);
END;
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION codex_audit_event_org(TEXT);
DROP TABLE audit_events;
DROP TABLE audit_heads;
DROP TABLE audit_settings;
