-- Usage batches of schema version 3 say which memories an edge injected
-- into its requests (name, version, scope, requests, tokens: never the
-- text) and how many audit records of each capture level it wrote (never
-- their content), summed per hour of the window's start.

-- +goose Up
CREATE TABLE memory_use_hour (
    org_id    TEXT NOT NULL REFERENCES orgs (id),
    ts        TIMESTAMPTZ NOT NULL,
    workspace TEXT NOT NULL,
    key_ref   TEXT NOT NULL,
    name      TEXT NOT NULL,
    version   BIGINT NOT NULL,
    requests  BIGINT NOT NULL,
    tokens    BIGINT NOT NULL,
    estimated BIGINT NOT NULL,
    PRIMARY KEY (org_id, ts, workspace, key_ref, name, version)
);
ALTER TABLE memory_use_hour ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory_use_hour FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON memory_use_hour
    USING (org_id = current_setting('app.org_id', true))
    WITH CHECK (org_id = current_setting('app.org_id', true));

CREATE TABLE audit_count_hour (
    org_id    TEXT NOT NULL REFERENCES orgs (id),
    ts        TIMESTAMPTZ NOT NULL,
    workspace TEXT NOT NULL,
    level     TEXT NOT NULL CHECK (level IN ('none', 'hash', 'full')),
    records   BIGINT NOT NULL,
    PRIMARY KEY (org_id, ts, workspace, level)
);
ALTER TABLE audit_count_hour ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_count_hour FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON audit_count_hour
    USING (org_id = current_setting('app.org_id', true))
    WITH CHECK (org_id = current_setting('app.org_id', true));

-- Pruning keeps memory uses and audit counts as long as hourly usage.
-- +goose StatementBegin
DO $$
BEGIN
    EXECUTE format('CREATE POLICY maintenance_read ON memory_use_hour FOR SELECT TO %I USING (true)', current_user);
    EXECUTE format('CREATE POLICY maintenance ON memory_use_hour FOR DELETE TO %I USING (true)', current_user);
    EXECUTE format('CREATE POLICY maintenance_read ON audit_count_hour FOR SELECT TO %I USING (true)', current_user);
    EXECUTE format('CREATE POLICY maintenance ON audit_count_hour FOR DELETE TO %I USING (true)', current_user);
END
$$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION codex_prune(p_now timestamptz, keep_minutes interval, keep_hours interval, keep_days interval)
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
    DELETE FROM memory_use_hour WHERE ts < t - keep_hours;
    DELETE FROM audit_count_hour WHERE ts < t - keep_hours;
    UPDATE edges SET sharing = FALSE WHERE sharing AND last_seen < t - interval '10 minutes';
END
$$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION codex_prune(p_now timestamptz, keep_minutes interval, keep_hours interval, keep_days interval)
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
DROP TABLE audit_count_hour;
DROP TABLE memory_use_hour;
