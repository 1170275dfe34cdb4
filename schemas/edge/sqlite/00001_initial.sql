-- The edge's embedded store. Every tenant table carries org_id and every
-- query filters by it, as the Postgres store does under row-level security.
-- Times are integer Unix nanoseconds (UTC); NULL means "not set" or
-- "unknown", never zero.

-- +goose Up
-- fingerprint_secret is sealed by the org's data key (purpose "secret");
-- NULL until the edge makes it on the org's first request.
CREATE TABLE orgs (
    id                 TEXT    NOT NULL PRIMARY KEY,
    name               TEXT    NOT NULL UNIQUE,
    created_at         INTEGER NOT NULL,
    fingerprint_secret BLOB
);

-- Per-org data keys, stored only wrapped by a master key (schemas/crypto).
CREATE TABLE data_keys (
    org_id         TEXT    NOT NULL REFERENCES orgs (id),
    id             TEXT    NOT NULL,
    generation     INTEGER NOT NULL,
    state          TEXT    NOT NULL CHECK (state IN ('active', 'retired')),
    master_ref     TEXT    NOT NULL,
    master_version TEXT    NOT NULL,
    wrapped        BLOB    NOT NULL,
    created_at     INTEGER NOT NULL,
    rewrapped_at   INTEGER,
    PRIMARY KEY (org_id, id),
    UNIQUE (org_id, generation)
);

CREATE TABLE api_keys (
    id         TEXT    NOT NULL PRIMARY KEY,
    org_id     TEXT    NOT NULL REFERENCES orgs (id),
    name       TEXT    NOT NULL,
    prefix     TEXT    NOT NULL,
    hash       BLOB    NOT NULL UNIQUE CHECK (length(hash) = 32),
    state      TEXT    NOT NULL CHECK (state IN ('active', 'revoked')),
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX api_keys_org ON api_keys (org_id, created_at, id);

CREATE TABLE provider_configs (
    org_id      TEXT    NOT NULL REFERENCES orgs (id),
    provider    TEXT    NOT NULL CHECK (provider IN ('openai', 'anthropic')),
    base_url    TEXT    NOT NULL,
    api_key_env TEXT    NOT NULL,
    -- The provider key sealed by the org's data key (purpose "credential"),
    -- or NULL when the key comes from the environment variable api_key_env.
    sealed_key  BLOB,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (org_id, provider)
);

-- Token counts and cost are NULL when the provider did not report them.
CREATE TABLE requests (
    id                  TEXT    NOT NULL PRIMARY KEY,
    org_id              TEXT    NOT NULL REFERENCES orgs (id),
    at                  INTEGER NOT NULL,
    key_id              TEXT    NOT NULL,
    provider            TEXT    NOT NULL,
    endpoint            TEXT    NOT NULL,
    model               TEXT    NOT NULL,
    stream              BOOLEAN NOT NULL,
    input_tokens        INTEGER,
    cached_input_tokens INTEGER,
    cache_write_tokens  INTEGER,
    output_tokens       INTEGER,
    reasoning_tokens    INTEGER,
    cost_nano_usd       INTEGER,
    saved_nano_usd      INTEGER NOT NULL,
    latency_ns          INTEGER NOT NULL,
    upstream_latency_ns INTEGER NOT NULL,
    status              INTEGER NOT NULL,
    cache               TEXT    NOT NULL,
    fingerprint         TEXT    NOT NULL,
    memory_id           TEXT    NOT NULL
);
CREATE INDEX requests_org_time ON requests (org_id, at, id);

-- The change feed: written in the same transaction as the change it records,
-- polled by running instances to drop cached keys and settings.
CREATE TABLE changes (
    seq    INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    org_id TEXT    NOT NULL,
    kind   TEXT    NOT NULL CHECK (kind IN ('key', 'provider', 'org', 'dek')),
    ref    TEXT    NOT NULL,
    at     INTEGER NOT NULL
);

-- +goose Down
DROP TABLE changes;
DROP TABLE requests;
DROP TABLE provider_configs;
DROP TABLE api_keys;
DROP TABLE data_keys;
DROP TABLE orgs;
