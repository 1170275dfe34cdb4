-- Request metadata in monthly partitions (issue 19): retention drops a
-- month's partition whole once all of it is older than CODEX_RETENTION,
-- instead of deleting its rows one batch at a time; the month at the edge
-- of the retention window is still trimmed by batched deletes.
--
-- requests becomes a table partitioned by range of at, one partition per
-- calendar month (UTC) named requests_yYYYYmMM, and a DEFAULT partition,
-- requests_default, that takes a record no monthly partition covers (one
-- timestamped months ahead, or one of a month already dropped), so an
-- insert never fails for want of a partition. The primary key becomes
-- (id, at): a partitioned table's unique keys must hold the partition key.
-- Request ids are random, so (id, at) is as unique as id in practice.
--
-- serve creates the partitions ahead of time (the current month and the
-- next two) and drops the old ones from its retention loop, through two
-- SECURITY DEFINER functions: the partitions belong to the owner role, and
-- the application role owns no table. It gets no privilege on any
-- partition: it reaches the rows only through requests, whose row-level
-- security applies. Each partition has forced row-level security and the
-- tenant policy too, as every table with org_id does.

-- +goose Up
-- +goose StatementBegin
-- codex_requests_partitions creates the monthly partition of every month
-- from lo's to hi's that has none (at most 120 months in one call), moving
-- in the rows the DEFAULT partition held for it, and returns the names
-- created. Concurrent callers take turns on an advisory lock.
CREATE FUNCTION codex_requests_partitions(lo TIMESTAMPTZ, hi TIMESTAMPTZ)
RETURNS SETOF TEXT
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    m      TIMESTAMP := date_trunc('month', lo AT TIME ZONE 'UTC');
    last   TIMESTAMP := date_trunc('month', hi AT TIME ZONE 'UTC');
    -- The search path starts with pg_catalog: a new table goes in the
    -- schema of requests, named explicitly.
    sch    TEXT := (SELECT relnamespace::regnamespace::text FROM pg_class WHERE oid = 'requests'::regclass);
    name   TEXT;
    starts TIMESTAMPTZ;
    ends   TIMESTAMPTZ;
BEGIN
    IF last > m + interval '120 months' THEN
        RAISE EXCEPTION 'codex_requests_partitions: % to % is more than 120 months', lo, hi;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('codex_requests_partitions'));
    WHILE m <= last LOOP
        name := 'requests_' || to_char(m, '"y"YYYY"m"MM');
        starts := m AT TIME ZONE 'UTC';
        ends := (m + interval '1 month') AT TIME ZONE 'UTC';
        IF to_regclass(format('%s.%I', sch, name)) IS NULL THEN
            EXECUTE format('CREATE TABLE %s.%I (LIKE requests INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', sch, name);
            -- The owner sees the default partition's rows only without
            -- FORCE; the statement's lock keeps anyone else out meanwhile.
            ALTER TABLE requests_default NO FORCE ROW LEVEL SECURITY;
            EXECUTE format('WITH moved AS (DELETE FROM requests_default WHERE at >= $1 AND at < $2 RETURNING *)
                            INSERT INTO %I SELECT * FROM moved', name) USING starts, ends;
            ALTER TABLE requests_default FORCE ROW LEVEL SECURITY;
            EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', name);
            EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', name);
            EXECUTE format('CREATE POLICY tenant ON %I USING (org_id = current_setting(''app.org_id'', true))
                            WITH CHECK (org_id = current_setting(''app.org_id'', true))', name);
            EXECUTE format('ALTER TABLE requests ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', name, starts, ends);
            RETURN NEXT name;
        END IF;
        m := m + interval '1 month';
    END LOOP;
END;
$$;
-- +goose StatementEnd

-- +goose StatementBegin
-- codex_requests_drop_partitions drops every monthly partition whose whole
-- month ends at or before before, and returns the names dropped.
CREATE FUNCTION codex_requests_drop_partitions(before TIMESTAMPTZ)
RETURNS SETOF TEXT
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    name TEXT;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('codex_requests_partitions'));
    FOR name IN
        SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'requests'::regclass AND c.relname ~ '^requests_y[0-9]{4}m[0-9]{2}$'
        ORDER BY c.relname
    LOOP
        IF (make_timestamp(substr(name, 11, 4)::int, substr(name, 16, 2)::int, 1, 0, 0, 0)
            + interval '1 month') AT TIME ZONE 'UTC' <= before THEN
            EXECUTE format('DROP TABLE %I', name);
            RETURN NEXT name;
        END IF;
    END LOOP;
END;
$$;
-- +goose StatementEnd

ALTER TABLE requests NO FORCE ROW LEVEL SECURITY; -- the owner moves every row below
ALTER TABLE requests RENAME TO requests_unpartitioned;
ALTER INDEX requests_pkey RENAME TO requests_unpartitioned_pkey;
ALTER INDEX requests_org_time RENAME TO requests_unpartitioned_org_time;

CREATE TABLE requests (
    LIKE requests_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
    PRIMARY KEY (id, at),
    FOREIGN KEY (org_id) REFERENCES orgs (id)
) PARTITION BY RANGE (at);
CREATE INDEX requests_org_time ON requests (org_id, at, id);

CREATE TABLE requests_default PARTITION OF requests DEFAULT;
ALTER TABLE requests_default ENABLE ROW LEVEL SECURITY;
ALTER TABLE requests_default FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON requests_default
    USING (org_id = current_setting('app.org_id', true))
    WITH CHECK (org_id = current_setting('app.org_id', true));

-- +goose StatementBegin
DO $$
DECLARE
    app    TEXT := current_setting('codex.app_role', true);
    schema TEXT := current_schema();
    oldest TIMESTAMPTZ;
BEGIN
    IF app IS NULL OR app = '' THEN
        RAISE EXCEPTION 'codex.app_role is not set: run migrations with codex-edge migrate';
    END IF;
    -- A partition for every month the existing rows fall in (the last
    -- 117 at most: an older row goes to the default partition) through two
    -- months ahead; then the rows move in.
    SELECT min(at) INTO oldest FROM requests_unpartitioned;
    oldest := GREATEST(COALESCE(oldest, now()), now() - interval '117 months');
    PERFORM codex_requests_partitions(oldest, now() + interval '2 months');
    INSERT INTO requests SELECT * FROM requests_unpartitioned;
    DROP TABLE requests_unpartitioned;

    EXECUTE format('ALTER FUNCTION codex_requests_partitions(timestamptz, timestamptz) SET search_path = pg_catalog, %I, pg_temp', schema);
    EXECUTE format('ALTER FUNCTION codex_requests_drop_partitions(timestamptz) SET search_path = pg_catalog, %I, pg_temp', schema);
    REVOKE ALL ON FUNCTION codex_requests_partitions(timestamptz, timestamptz) FROM PUBLIC;
    REVOKE ALL ON FUNCTION codex_requests_drop_partitions(timestamptz) FROM PUBLIC;
    EXECUTE format('GRANT EXECUTE ON FUNCTION codex_requests_partitions(timestamptz, timestamptz) TO %I', app);
    EXECUTE format('GRANT EXECUTE ON FUNCTION codex_requests_drop_partitions(timestamptz) TO %I', app);
    EXECUTE format('GRANT SELECT, INSERT, DELETE ON requests TO %I', app);
END;
$$;
-- +goose StatementEnd

ALTER TABLE requests ENABLE ROW LEVEL SECURITY;
ALTER TABLE requests FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON requests
    USING (org_id = current_setting('app.org_id', true))
    WITH CHECK (org_id = current_setting('app.org_id', true));

-- +goose Down
ALTER TABLE requests NO FORCE ROW LEVEL SECURITY;
ALTER TABLE requests RENAME TO requests_partitioned;
ALTER INDEX requests_pkey RENAME TO requests_partitioned_pkey;
ALTER INDEX requests_org_time RENAME TO requests_partitioned_org_time;
CREATE TABLE requests (
    LIKE requests_partitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
    PRIMARY KEY (id),
    FOREIGN KEY (org_id) REFERENCES orgs (id)
);
CREATE INDEX requests_org_time ON requests (org_id, at, id);
INSERT INTO requests SELECT * FROM requests_partitioned;
DROP TABLE requests_partitioned;
DROP FUNCTION codex_requests_drop_partitions(TIMESTAMPTZ);
DROP FUNCTION codex_requests_partitions(TIMESTAMPTZ, TIMESTAMPTZ);
ALTER TABLE requests ENABLE ROW LEVEL SECURITY;
ALTER TABLE requests FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON requests
    USING (org_id = current_setting('app.org_id', true))
    WITH CHECK (org_id = current_setting('app.org_id', true));
-- +goose StatementBegin
DO $$
DECLARE
    app TEXT := current_setting('codex.app_role', true);
BEGIN
    IF app IS NOT NULL AND app <> '' THEN
        EXECUTE format('GRANT SELECT, INSERT, DELETE ON requests TO %I', app);
    END IF;
END;
$$;
-- +goose StatementEnd
