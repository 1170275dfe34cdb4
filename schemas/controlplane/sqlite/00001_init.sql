-- Control plane schema: accounts, edges, enrollment and usage at three resolutions.
-- Times are Unix seconds (UTC).

-- +goose Up
CREATE TABLE orgs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs (id),
    email TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'viewer')),
    password_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (org_id, email)
);

-- Only the SHA-256 of a token is stored; used_at makes it single use.
CREATE TABLE enroll_tokens (
    hash BLOB PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs (id),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER,
    edge_id TEXT
);

CREATE TABLE edges (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs (id),
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    public_key TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    last_seen INTEGER,
    sharing BOOLEAN NOT NULL DEFAULT FALSE,
    revoked_at INTEGER
);
CREATE INDEX edges_org ON edges (org_id);

-- One row per batch received: the primary key makes ingest idempotent.
CREATE TABLE usage_batches (
    edge_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    org_id TEXT NOT NULL REFERENCES orgs (id),
    window_start INTEGER NOT NULL,
    window_end INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    row_count INTEGER NOT NULL,
    PRIMARY KEY (edge_id, seq)
);
CREATE INDEX usage_batches_org_received ON usage_batches (org_id, received_at);

CREATE TABLE usage_minute (
    org_id TEXT NOT NULL REFERENCES orgs (id),
    ts INTEGER NOT NULL,
    edge_id TEXT NOT NULL,
    workspace TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    key_ref TEXT NOT NULL,
    cache_status TEXT NOT NULL,
    status_class TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    input INTEGER NOT NULL DEFAULT 0,
    input_unknown INTEGER NOT NULL DEFAULT 0,
    cached_input INTEGER NOT NULL DEFAULT 0,
    cached_input_unknown INTEGER NOT NULL DEFAULT 0,
    cache_write INTEGER NOT NULL DEFAULT 0,
    cache_write_unknown INTEGER NOT NULL DEFAULT 0,
    output INTEGER NOT NULL DEFAULT 0,
    output_unknown INTEGER NOT NULL DEFAULT 0,
    reasoning INTEGER NOT NULL DEFAULT 0,
    reasoning_unknown INTEGER NOT NULL DEFAULT 0,
    cost_nano_usd INTEGER NOT NULL DEFAULT 0,
    cost_unknown INTEGER NOT NULL DEFAULT 0,
    saved_nano_usd INTEGER NOT NULL DEFAULT 0,
    lat_00 INTEGER NOT NULL DEFAULT 0,
    lat_01 INTEGER NOT NULL DEFAULT 0,
    lat_02 INTEGER NOT NULL DEFAULT 0,
    lat_03 INTEGER NOT NULL DEFAULT 0,
    lat_04 INTEGER NOT NULL DEFAULT 0,
    lat_05 INTEGER NOT NULL DEFAULT 0,
    lat_06 INTEGER NOT NULL DEFAULT 0,
    lat_07 INTEGER NOT NULL DEFAULT 0,
    lat_08 INTEGER NOT NULL DEFAULT 0,
    lat_09 INTEGER NOT NULL DEFAULT 0,
    lat_10 INTEGER NOT NULL DEFAULT 0,
    lat_11 INTEGER NOT NULL DEFAULT 0,
    lat_12 INTEGER NOT NULL DEFAULT 0,
    lat_13 INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (org_id, ts, edge_id, workspace, provider, model, key_ref, cache_status, status_class)
) WITHOUT ROWID;

CREATE TABLE usage_hour (
    org_id TEXT NOT NULL REFERENCES orgs (id),
    ts INTEGER NOT NULL,
    edge_id TEXT NOT NULL,
    workspace TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    key_ref TEXT NOT NULL,
    cache_status TEXT NOT NULL,
    status_class TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    input INTEGER NOT NULL DEFAULT 0,
    input_unknown INTEGER NOT NULL DEFAULT 0,
    cached_input INTEGER NOT NULL DEFAULT 0,
    cached_input_unknown INTEGER NOT NULL DEFAULT 0,
    cache_write INTEGER NOT NULL DEFAULT 0,
    cache_write_unknown INTEGER NOT NULL DEFAULT 0,
    output INTEGER NOT NULL DEFAULT 0,
    output_unknown INTEGER NOT NULL DEFAULT 0,
    reasoning INTEGER NOT NULL DEFAULT 0,
    reasoning_unknown INTEGER NOT NULL DEFAULT 0,
    cost_nano_usd INTEGER NOT NULL DEFAULT 0,
    cost_unknown INTEGER NOT NULL DEFAULT 0,
    saved_nano_usd INTEGER NOT NULL DEFAULT 0,
    lat_00 INTEGER NOT NULL DEFAULT 0,
    lat_01 INTEGER NOT NULL DEFAULT 0,
    lat_02 INTEGER NOT NULL DEFAULT 0,
    lat_03 INTEGER NOT NULL DEFAULT 0,
    lat_04 INTEGER NOT NULL DEFAULT 0,
    lat_05 INTEGER NOT NULL DEFAULT 0,
    lat_06 INTEGER NOT NULL DEFAULT 0,
    lat_07 INTEGER NOT NULL DEFAULT 0,
    lat_08 INTEGER NOT NULL DEFAULT 0,
    lat_09 INTEGER NOT NULL DEFAULT 0,
    lat_10 INTEGER NOT NULL DEFAULT 0,
    lat_11 INTEGER NOT NULL DEFAULT 0,
    lat_12 INTEGER NOT NULL DEFAULT 0,
    lat_13 INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (org_id, ts, edge_id, workspace, provider, model, key_ref, cache_status, status_class)
) WITHOUT ROWID;

CREATE TABLE usage_day (
    org_id TEXT NOT NULL REFERENCES orgs (id),
    ts INTEGER NOT NULL,
    edge_id TEXT NOT NULL,
    workspace TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    key_ref TEXT NOT NULL,
    cache_status TEXT NOT NULL,
    status_class TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    input INTEGER NOT NULL DEFAULT 0,
    input_unknown INTEGER NOT NULL DEFAULT 0,
    cached_input INTEGER NOT NULL DEFAULT 0,
    cached_input_unknown INTEGER NOT NULL DEFAULT 0,
    cache_write INTEGER NOT NULL DEFAULT 0,
    cache_write_unknown INTEGER NOT NULL DEFAULT 0,
    output INTEGER NOT NULL DEFAULT 0,
    output_unknown INTEGER NOT NULL DEFAULT 0,
    reasoning INTEGER NOT NULL DEFAULT 0,
    reasoning_unknown INTEGER NOT NULL DEFAULT 0,
    cost_nano_usd INTEGER NOT NULL DEFAULT 0,
    cost_unknown INTEGER NOT NULL DEFAULT 0,
    saved_nano_usd INTEGER NOT NULL DEFAULT 0,
    lat_00 INTEGER NOT NULL DEFAULT 0,
    lat_01 INTEGER NOT NULL DEFAULT 0,
    lat_02 INTEGER NOT NULL DEFAULT 0,
    lat_03 INTEGER NOT NULL DEFAULT 0,
    lat_04 INTEGER NOT NULL DEFAULT 0,
    lat_05 INTEGER NOT NULL DEFAULT 0,
    lat_06 INTEGER NOT NULL DEFAULT 0,
    lat_07 INTEGER NOT NULL DEFAULT 0,
    lat_08 INTEGER NOT NULL DEFAULT 0,
    lat_09 INTEGER NOT NULL DEFAULT 0,
    lat_10 INTEGER NOT NULL DEFAULT 0,
    lat_11 INTEGER NOT NULL DEFAULT 0,
    lat_12 INTEGER NOT NULL DEFAULT 0,
    lat_13 INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (org_id, ts, edge_id, workspace, provider, model, key_ref, cache_status, status_class)
) WITHOUT ROWID;

-- +goose Down
DROP TABLE usage_day;
DROP TABLE usage_hour;
DROP TABLE usage_minute;
DROP TABLE usage_batches;
DROP TABLE edges;
DROP TABLE enroll_tokens;
DROP TABLE users;
DROP TABLE orgs;
