-- Usage batches of schema version 3 say which memories an edge injected
-- into its requests (name, version, scope, requests, tokens: never the
-- text) and how many audit records of each capture level it wrote (never
-- their content), summed per hour of the window's start.

-- +goose Up
CREATE TABLE memory_use_hour (
    org_id    TEXT NOT NULL REFERENCES orgs (id),
    ts        INTEGER NOT NULL,
    workspace TEXT NOT NULL,
    key_ref   TEXT NOT NULL,
    name      TEXT NOT NULL,
    version   INTEGER NOT NULL,
    requests  INTEGER NOT NULL,
    tokens    INTEGER NOT NULL,
    estimated INTEGER NOT NULL,
    PRIMARY KEY (org_id, ts, workspace, key_ref, name, version)
) WITHOUT ROWID;

CREATE TABLE audit_count_hour (
    org_id    TEXT NOT NULL REFERENCES orgs (id),
    ts        INTEGER NOT NULL,
    workspace TEXT NOT NULL,
    level     TEXT NOT NULL CHECK (level IN ('none', 'hash', 'full')),
    records   INTEGER NOT NULL,
    PRIMARY KEY (org_id, ts, workspace, level)
) WITHOUT ROWID;

-- +goose Down
DROP TABLE audit_count_hour;
DROP TABLE memory_use_hour;
