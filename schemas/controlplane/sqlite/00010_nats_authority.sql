-- The NATS authority that every control plane instance shares (the
-- operator, system and ingest account seeds are deployment_secrets named
-- "nats/operator", "nats/system" and "nats/ingest").
--
-- nats_org_keys holds each org's scoped signing key seed, sealed with the
-- control plane's sealer (purpose "nats-seed", bound to "org/<org id>"):
-- never plaintext. Written once, deleted when the org is removed from the
-- ingest account: a table of its own, so that deployment_secrets stays
-- write-once (no instance can delete the operator's seed). Like
-- deployment_secrets it is the deployment's, not a tenant table: only the
-- control plane's NATS authority reads it, never on an org's behalf (hence
-- no org_id column under row-level security).
--
-- nats_accounts holds the account JWTs the control plane signs (the
-- ingest account's scoped signing keys and revocations), with a version
-- bumped on each change. A change is read, modified and written in one
-- immediate transaction (the database's write lock), so no instance
-- writes over another's.
-- The JWTs are signed by the operator and hold no secret.

-- +goose Up
CREATE TABLE nats_org_keys (
    org        TEXT PRIMARY KEY CHECK (org <> ''),
    sealed     BLOB NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE nats_accounts (
    account    TEXT PRIMARY KEY CHECK (account <> ''),
    jwt        TEXT NOT NULL,
    version    INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- +goose Down
DROP TABLE nats_accounts;
DROP TABLE nats_org_keys;
