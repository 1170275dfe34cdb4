-- Usage batches of schema version 2 count the requests an edge refused
-- because of a rate limit or a budget, and report each budget's use.

-- +goose Up
ALTER TABLE usage_minute ADD COLUMN limited INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_minute ADD COLUMN budget_refused INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_hour ADD COLUMN limited INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_hour ADD COLUMN budget_refused INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_day ADD COLUMN limited INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_day ADD COLUMN budget_refused INTEGER NOT NULL DEFAULT 0;

-- The last reported use of each budget (key_ref "none": the workspace's).
CREATE TABLE budget_use (
    org_id         TEXT NOT NULL REFERENCES orgs (id),
    workspace      TEXT NOT NULL,
    key_ref        TEXT NOT NULL,
    period         TEXT NOT NULL CHECK (period IN ('day', 'month')),
    cap_nano_usd   INTEGER NOT NULL,
    spent_nano_usd INTEGER NOT NULL,
    edge_id        TEXT NOT NULL,
    as_of          INTEGER NOT NULL,
    PRIMARY KEY (org_id, workspace, key_ref, period)
) WITHOUT ROWID;

-- +goose Down
DROP TABLE budget_use;
ALTER TABLE usage_day DROP COLUMN budget_refused;
ALTER TABLE usage_day DROP COLUMN limited;
ALTER TABLE usage_hour DROP COLUMN budget_refused;
ALTER TABLE usage_hour DROP COLUMN limited;
ALTER TABLE usage_minute DROP COLUMN budget_refused;
ALTER TABLE usage_minute DROP COLUMN limited;
