-- The hybrid link's state, shared by every replica of a deployment
-- (edge/telemetry State; edge/store/postgres TelemetryState): one
-- enrollment (one identity towards the control plane), the sharing
-- switch, one batch sequence, the spool of batches not yet acknowledged
-- and the egress ledger. On SQLite (one instance) the same state stays in
-- files under CODEX_DATA_DIR/telemetry.
--
-- These rows belong to the deployment, not to any org: they carry no
-- org_id, are not under row-level security, and no tenant query reads
-- them. The secrets among them (the NATS user seed, the pseudonym secret)
-- are sealed by the keyring under the scope 'edge-telemetry' (purpose
-- telemetry), whose data keys live in telemetry_data_keys rather than
-- data_keys: data_keys rows belong to an org (foreign key, tenant
-- policy), and a reserved org among the tenants would show in every org
-- listing. The data keys are wrapped by the deployment's master key, as
-- the orgs' are.

-- +goose Up
-- One row (id is always true): the enrollment, switch and counters.
CREATE TABLE telemetry_state (
    id                 BOOLEAN NOT NULL PRIMARY KEY DEFAULT true CHECK (id),
    -- The Enrollment as JSON (edge id, NATS URL, user JWT, the sealed
    -- seed and pseudonym secret); NULL until enrolled.
    enrollment         JSONB,
    sharing_on         BOOLEAN NOT NULL DEFAULT false,
    sharing_changed_at TIMESTAMPTZ,
    sharing_by         TEXT NOT NULL DEFAULT '',
    last_seq           BIGINT NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    last_sent_seq      BIGINT NOT NULL DEFAULT 0,
    last_sent_at       TIMESTAMPTZ,
    spool_dropped      BIGINT NOT NULL DEFAULT 0
);
INSERT INTO telemetry_state (id) VALUES (true);

-- Batches not yet acknowledged. A sender claims the oldest one not held
-- (FOR UPDATE SKIP LOCKED) and holds it until lease_until; a batch whose
-- holder stopped is claimed by another replica once the lease expires.
CREATE TABLE telemetry_spool (
    seq         BIGINT NOT NULL PRIMARY KEY CHECK (seq > 0),
    data        BYTEA NOT NULL,
    holder      TEXT,
    lease_until TIMESTAMPTZ,
    -- retaken: claimed after another holder's lease expired, so that
    -- holder may have published it already.
    retaken     BOOLEAN NOT NULL DEFAULT false
);

-- The egress ledger: each entry as the files' ledger line (JSON, with the
-- exact batch bytes), in the order written. A usage batch (kind '') has
-- one entry whichever replica sends it, however often.
CREATE TABLE telemetry_ledger (
    id    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind  TEXT NOT NULL,
    seq   BIGINT NOT NULL,
    entry BYTEA NOT NULL
);
CREATE UNIQUE INDEX telemetry_ledger_batch ON telemetry_ledger (seq) WHERE kind = '';

-- The data keys of the deployment's own secrets (keyring scope
-- 'edge-telemetry'), the same columns as data_keys, keyed by scope.
CREATE TABLE telemetry_data_keys (
    scope          TEXT COLLATE "C" NOT NULL CHECK (scope <> ''),
    id             TEXT COLLATE "C" NOT NULL,
    generation     INTEGER NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('active', 'retired')),
    master_ref     TEXT NOT NULL,
    master_version TEXT NOT NULL,
    wrapped        BYTEA NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL,
    rewrapped_at   TIMESTAMPTZ,
    seals          BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, id),
    UNIQUE (scope, generation)
);

-- +goose StatementBegin
DO $$
DECLARE
    app TEXT := current_setting('codex.app_role', true);
BEGIN
    IF app IS NULL OR app = '' THEN
        RAISE EXCEPTION 'codex.app_role is not set: run migrations with codex-edge migrate';
    END IF;
    EXECUTE format('GRANT SELECT, UPDATE ON telemetry_state TO %I', app);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON telemetry_spool TO %I', app);
    EXECUTE format('GRANT SELECT, INSERT ON telemetry_ledger TO %I', app);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON telemetry_data_keys TO %I', app);
END;
$$;
-- +goose StatementEnd

-- +goose Down
DROP TABLE telemetry_data_keys;
DROP TABLE telemetry_ledger;
DROP TABLE telemetry_spool;
DROP TABLE telemetry_state;
