-- +goose Up
-- Rate limits and budgets (DESIGN §10), per org (key_id '') or per key,
-- and the settled spend per org or key and period (nano-USD), the source
-- of truth of budgets' spent amounts.
CREATE TABLE limits (
    org_id     TEXT    NOT NULL REFERENCES orgs (id),
    key_id     TEXT    NOT NULL,
    rpm        INTEGER NOT NULL CHECK (rpm >= 0),
    tpm        INTEGER NOT NULL CHECK (tpm >= 0),
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (org_id, key_id)
);

CREATE TABLE budgets (
    org_id       TEXT    NOT NULL REFERENCES orgs (id),
    key_id       TEXT    NOT NULL,
    period       TEXT    NOT NULL CHECK (period IN ('day', 'month')),
    cap_nano_usd INTEGER NOT NULL CHECK (cap_nano_usd > 0),
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (org_id, key_id, period)
);

CREATE TABLE spend (
    org_id       TEXT    NOT NULL REFERENCES orgs (id),
    key_id       TEXT    NOT NULL,
    period       TEXT    NOT NULL CHECK (period IN ('day', 'month')),
    period_start INTEGER NOT NULL,
    nano_usd     INTEGER NOT NULL CHECK (nano_usd >= 0),
    PRIMARY KEY (org_id, key_id, period, period_start)
);

-- The change feed gains the kinds "limit" and "budget". SQLite cannot
-- alter a CHECK constraint: the table is rebuilt, seqs kept, and its
-- AUTOINCREMENT counter carried over (see 00004).
CREATE TABLE changes_new (
    seq    INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    org_id TEXT    NOT NULL,
    kind   TEXT    NOT NULL CHECK (kind IN ('key', 'provider', 'org', 'dek', 'memory', 'limit', 'budget')),
    ref    TEXT    NOT NULL,
    at     INTEGER NOT NULL
);
INSERT INTO changes_new (seq, org_id, kind, ref, at) SELECT seq, org_id, kind, ref, at FROM changes;
UPDATE sqlite_sequence SET seq = (SELECT seq FROM sqlite_sequence WHERE name = 'changes')
    WHERE name = 'changes_new' AND seq < (SELECT seq FROM sqlite_sequence WHERE name = 'changes');
INSERT INTO sqlite_sequence (name, seq) SELECT 'changes_new', seq FROM sqlite_sequence WHERE name = 'changes'
    AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'changes_new');
DROP TABLE changes;
ALTER TABLE changes_new RENAME TO changes;

-- +goose Down
CREATE TABLE changes_old (
    seq    INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    org_id TEXT    NOT NULL,
    kind   TEXT    NOT NULL CHECK (kind IN ('key', 'provider', 'org', 'dek', 'memory')),
    ref    TEXT    NOT NULL,
    at     INTEGER NOT NULL
);
INSERT INTO changes_old (seq, org_id, kind, ref, at)
    SELECT seq, org_id, kind, ref, at FROM changes WHERE kind NOT IN ('limit', 'budget');
UPDATE sqlite_sequence SET seq = (SELECT seq FROM sqlite_sequence WHERE name = 'changes')
    WHERE name = 'changes_old' AND seq < (SELECT seq FROM sqlite_sequence WHERE name = 'changes');
INSERT INTO sqlite_sequence (name, seq) SELECT 'changes_old', seq FROM sqlite_sequence WHERE name = 'changes'
    AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'changes_old');
DROP TABLE changes;
ALTER TABLE changes_old RENAME TO changes;
DROP TABLE spend;
DROP TABLE budgets;
DROP TABLE limits;
