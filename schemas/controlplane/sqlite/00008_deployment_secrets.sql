-- Secrets of the deployment, not of an org, that every control plane
-- instance must share: the dashboards' session signing keys, so a session
-- begun on one instance is valid on any. Each is sealed with the control
-- plane's sealer (purpose "deployment-secret", bound to its name): never
-- plaintext. Written once, never changed: no UPDATE is granted.

-- +goose Up
CREATE TABLE deployment_secrets (
    name       TEXT PRIMARY KEY CHECK (name <> ''),
    sealed     BLOB NOT NULL,
    created_at INTEGER NOT NULL
);

-- +goose Down
DROP TABLE deployment_secrets;
