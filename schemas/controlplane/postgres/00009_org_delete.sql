-- An owner deletes their org from the dashboard (issue 19): every row that
-- names it goes, through codex_delete_org, and the deletion is recorded in
-- org_deletions, at the deployment's level, since the org's own rows are
-- gone: its random id (not its name), when, the deleting user's id, and
-- the rows removed per table. org_deletions holds no tenant data, so it
-- has no row-level security; the application role may read and append.

-- +goose Up
CREATE TABLE org_deletions (
    deleted_org_id TEXT NOT NULL,
    at             TIMESTAMPTZ NOT NULL,
    by_user_id     TEXT NOT NULL,
    rows           JSONB NOT NULL
);

-- +goose StatementBegin
-- codex_delete_org deletes the org's rows in every table of the schema
-- with an org_id column (found in the catalog, so a table added later is
-- covered), retrying a table whose rows another table of the org still
-- references, then the org, and returns the rows removed per table. The
-- access log is append-only for everyone: the one exception is removing
-- an org whole, for which this function lifts the trigger and forced
-- row-level security within its transaction (its table lock keeps anyone
-- else out meanwhile).
CREATE FUNCTION codex_delete_org(org TEXT)
RETURNS TABLE (table_name TEXT, deleted BIGINT)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    pending TEXT[];
    retry   TEXT[];
    t       TEXT;
    n       BIGINT;
BEGIN
    IF org IS NULL OR org = '' THEN
        RAISE EXCEPTION 'codex_delete_org: no org';
    END IF;
    PERFORM set_config('app.org_id', org, true);
    PERFORM set_config('app.staff_id', '', true);
    IF NOT EXISTS (SELECT 1 FROM orgs WHERE id = org) THEN
        RETURN;
    END IF;
    ALTER TABLE access_log DISABLE TRIGGER access_log_no_change;
    ALTER TABLE access_log NO FORCE ROW LEVEL SECURITY;
    SELECT array_agg(c.relname::text ORDER BY c.relname) INTO pending
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
    WHERE a.attname = 'org_id' AND NOT a.attisdropped AND c.relnamespace = 'public'::regnamespace
      AND c.relkind IN ('r', 'p') AND NOT c.relispartition;
    WHILE cardinality(pending) > 0 LOOP
        retry := '{}';
        FOREACH t IN ARRAY pending LOOP
            BEGIN
                EXECUTE format('DELETE FROM %I WHERE org_id = $1', t) USING org;
                GET DIAGNOSTICS n = ROW_COUNT;
                table_name := t;
                deleted := n;
                RETURN NEXT;
            EXCEPTION WHEN foreign_key_violation THEN
                retry := retry || t;
            END;
        END LOOP;
        IF cardinality(retry) = cardinality(pending) THEN
            RAISE EXCEPTION 'codex_delete_org: the rows of % reference each other', retry;
        END IF;
        pending := retry;
    END LOOP;
    ALTER TABLE access_log FORCE ROW LEVEL SECURITY;
    ALTER TABLE access_log ENABLE TRIGGER access_log_no_change;
    DELETE FROM orgs WHERE id = org;
    GET DIAGNOSTICS n = ROW_COUNT;
    table_name := 'orgs';
    deleted := n;
    RETURN NEXT;
END;
$$;
-- +goose StatementEnd
REVOKE ALL ON FUNCTION codex_delete_org(text) FROM PUBLIC;

-- +goose Down
DROP FUNCTION codex_delete_org(TEXT);
DROP TABLE org_deletions;
