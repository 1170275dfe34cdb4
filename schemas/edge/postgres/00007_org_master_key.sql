-- +goose Up
-- The org's own master key (DESIGN §11, per-org master keys): the CODEX_KEK
-- form of the key its data keys are wrapped with ("awskms:<arn>"), or ''
-- for the edge's default master key (CODEX_KEK). Not secret: a reference.
ALTER TABLE orgs ADD COLUMN master_key TEXT NOT NULL DEFAULT '';

-- codex_org_master_keys: the orgs that have their own master key and its
-- reference (the keyring's per-org master keys and their probes), nothing
-- else about the orgs.
-- +goose StatementBegin
CREATE FUNCTION codex_org_master_keys()
RETURNS TABLE (org_id TEXT, master_key TEXT)
LANGUAGE sql STABLE SECURITY DEFINER AS $$
    SELECT o.id, o.master_key FROM orgs o WHERE o.master_key <> '' ORDER BY o.id
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
    EXECUTE format('ALTER FUNCTION codex_org_master_keys() SET search_path = pg_catalog, %I, pg_temp', schema);
    REVOKE ALL ON FUNCTION codex_org_master_keys() FROM PUBLIC;
    EXECUTE format('GRANT EXECUTE ON FUNCTION codex_org_master_keys() TO %I', app);
    EXECUTE format('GRANT UPDATE (master_key) ON orgs TO %I', app);
END;
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION codex_org_master_keys();
ALTER TABLE orgs DROP COLUMN master_key;
