-- +goose Up
-- Rate limits and budgets (DESIGN §10), per org (key_id '') or per key,
-- and the settled spend per org or key and period, the source of truth
-- that Redis counters are rebuilt from after a restart or a flush.
CREATE TABLE limits (
    org_id     TEXT COLLATE "C" NOT NULL REFERENCES orgs (id),
    key_id     TEXT COLLATE "C" NOT NULL,
    rpm        BIGINT NOT NULL CHECK (rpm >= 0),
    tpm        BIGINT NOT NULL CHECK (tpm >= 0),
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (org_id, key_id)
);

CREATE TABLE budgets (
    org_id       TEXT COLLATE "C" NOT NULL REFERENCES orgs (id),
    key_id       TEXT COLLATE "C" NOT NULL,
    period       TEXT COLLATE "C" NOT NULL CHECK (period IN ('day', 'month')),
    cap_nano_usd BIGINT NOT NULL CHECK (cap_nano_usd > 0),
    updated_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (org_id, key_id, period)
);

-- Money settled per org (key_id '') or key, per period, in nano-USD.
CREATE TABLE spend (
    org_id       TEXT COLLATE "C" NOT NULL REFERENCES orgs (id),
    key_id       TEXT COLLATE "C" NOT NULL,
    period       TEXT COLLATE "C" NOT NULL CHECK (period IN ('day', 'month')),
    period_start TIMESTAMPTZ NOT NULL,
    nano_usd     BIGINT NOT NULL CHECK (nano_usd >= 0),
    PRIMARY KEY (org_id, key_id, period, period_start)
);

ALTER TABLE changes DROP CONSTRAINT changes_kind_check;
ALTER TABLE changes ADD CONSTRAINT changes_kind_check
    CHECK (kind IN ('key', 'provider', 'org', 'dek', 'memory', 'limit', 'budget'));

ALTER TABLE limits ENABLE ROW LEVEL SECURITY;
ALTER TABLE limits FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON limits
    USING (org_id = current_setting('app.org_id', true))
    WITH CHECK (org_id = current_setting('app.org_id', true));

ALTER TABLE budgets ENABLE ROW LEVEL SECURITY;
ALTER TABLE budgets FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON budgets
    USING (org_id = current_setting('app.org_id', true))
    WITH CHECK (org_id = current_setting('app.org_id', true));

ALTER TABLE spend ENABLE ROW LEVEL SECURITY;
ALTER TABLE spend FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON spend
    USING (org_id = current_setting('app.org_id', true))
    WITH CHECK (org_id = current_setting('app.org_id', true));

-- +goose StatementBegin
DO $$
DECLARE
    app TEXT := current_setting('codex.app_role', true);
BEGIN
    IF app IS NULL OR app = '' THEN
        RAISE EXCEPTION 'codex.app_role is not set: run migrations with codex-edge migrate';
    END IF;
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON limits TO %I', app);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON budgets TO %I', app);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON spend TO %I', app);
END;
$$;
-- +goose StatementEnd

-- +goose Down
DELETE FROM changes WHERE kind IN ('limit', 'budget');
ALTER TABLE changes DROP CONSTRAINT changes_kind_check;
ALTER TABLE changes ADD CONSTRAINT changes_kind_check CHECK (kind IN ('key', 'provider', 'org', 'dek', 'memory'));
DROP TABLE spend;
DROP TABLE budgets;
DROP TABLE limits;
