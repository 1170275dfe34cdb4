-- Usage batches of schema version 2 count the requests an edge refused
-- because of a rate limit or a budget, and report each budget's use.

-- +goose Up
ALTER TABLE usage_minute ADD COLUMN limited BIGINT NOT NULL DEFAULT 0, ADD COLUMN budget_refused BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_hour ADD COLUMN limited BIGINT NOT NULL DEFAULT 0, ADD COLUMN budget_refused BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_day ADD COLUMN limited BIGINT NOT NULL DEFAULT 0, ADD COLUMN budget_refused BIGINT NOT NULL DEFAULT 0;

-- The last reported use of each budget (key_ref "none": the workspace's).
CREATE TABLE budget_use (
    org_id         TEXT NOT NULL REFERENCES orgs (id),
    workspace      TEXT NOT NULL,
    key_ref        TEXT NOT NULL,
    period         TEXT NOT NULL CHECK (period IN ('day', 'month')),
    cap_nano_usd   BIGINT NOT NULL,
    spent_nano_usd BIGINT NOT NULL,
    edge_id        TEXT NOT NULL,
    as_of          TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (org_id, workspace, key_ref, period)
);
ALTER TABLE budget_use ENABLE ROW LEVEL SECURITY;
ALTER TABLE budget_use FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON budget_use
    USING (org_id = current_setting('app.org_id', true))
    WITH CHECK (org_id = current_setting('app.org_id', true));

-- +goose Down
DROP TABLE budget_use;
ALTER TABLE usage_day DROP COLUMN limited, DROP COLUMN budget_refused;
ALTER TABLE usage_hour DROP COLUMN limited, DROP COLUMN budget_refused;
ALTER TABLE usage_minute DROP COLUMN limited, DROP COLUMN budget_refused;
