-- codex-edge orgs delete removes an org and every row naming it, through
-- codex_delete_org; the record of the deletion is kept in org_deletions,
-- at the deployment's level, because the org's own audit chain is deleted
-- with it. deleted_org_id is the org's random id (not its name); rows maps
-- each table to the rows removed. org_deletions holds no tenant's data, so
-- it has no row-level security.

-- +goose Up
CREATE TABLE org_deletions (
    deleted_org_id TEXT COLLATE "C" NOT NULL,
    at             TIMESTAMPTZ NOT NULL,
    actor          TEXT NOT NULL,
    via            TEXT NOT NULL,
    rows           JSONB NOT NULL
);

-- +goose StatementBegin
-- codex_delete_org deletes every row of the org in every table of the
-- schema with an org_id column (found in the catalog, so a table added
-- later is covered; partitions through their parent), then the org,
-- records the deletion in org_deletions (by actor, via, at), and returns
-- the rows removed per table. The application role may not delete audit
-- events itself (the log is append-only for it): removing an org whole is
-- the one exception, and it takes this function, which cannot remove an
-- org without leaving the record (the role may not write org_deletions
-- itself). A table whose rows another of the org's tables still
-- references is retried after it.
CREATE FUNCTION codex_delete_org(org TEXT, actor TEXT, via TEXT, at TIMESTAMPTZ)
RETURNS TABLE (table_name TEXT, deleted BIGINT)
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    ns      OID := (SELECT relnamespace FROM pg_class WHERE oid = 'orgs'::regclass);
    pending TEXT[];
    retry   TEXT[];
    t       TEXT;
    n       BIGINT;
    counts  JSONB := '{}';
BEGIN
    IF org IS NULL OR org = '' THEN
        RAISE EXCEPTION 'codex_delete_org: no org';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM orgs WHERE id = org) THEN
        RETURN;
    END IF;
    IF actor IS NULL OR actor = '' OR via IS NULL OR via = '' OR at IS NULL THEN
        RAISE EXCEPTION 'codex_delete_org: who deletes, through what and when are required';
    END IF;
    -- The tenant policies, forced on the owner too, let it see the org.
    PERFORM set_config('app.org_id', org, true);
    SELECT array_agg(c.relname::text ORDER BY c.relname) INTO pending
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
    WHERE a.attname = 'org_id' AND NOT a.attisdropped AND c.relnamespace = ns
      AND c.relkind IN ('r', 'p') AND NOT c.relispartition;
    WHILE cardinality(pending) > 0 LOOP
        retry := '{}';
        FOREACH t IN ARRAY pending LOOP
            BEGIN
                EXECUTE format('DELETE FROM %I WHERE org_id = $1', t) USING org;
                GET DIAGNOSTICS n = ROW_COUNT;
                counts := counts || jsonb_build_object(t, n);
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
    DELETE FROM orgs WHERE id = org;
    GET DIAGNOSTICS n = ROW_COUNT;
    counts := counts || jsonb_build_object('orgs', n);
    INSERT INTO org_deletions (deleted_org_id, at, actor, via, rows) VALUES (org, at, actor, via, counts);
    table_name := 'orgs';
    deleted := n;
    RETURN NEXT;
END;
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
    EXECUTE format('ALTER FUNCTION codex_delete_org(text, text, text, timestamptz) SET search_path = pg_catalog, %I, pg_temp', schema);
    REVOKE ALL ON FUNCTION codex_delete_org(text, text, text, timestamptz) FROM PUBLIC;
    EXECUTE format('GRANT EXECUTE ON FUNCTION codex_delete_org(text, text, text, timestamptz) TO %I', app);
    EXECUTE format('GRANT SELECT ON org_deletions TO %I', app);
END;
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION codex_delete_org(TEXT, TEXT, TEXT, TIMESTAMPTZ);
DROP TABLE org_deletions;
