-- +goose Up
-- Plain http to a non-loopback provider host is refused unless the operator
-- allowed it explicitly (codex-edge providers set --allow-insecure-http);
-- the edge checks again when it loads the setting. The application role's
-- SELECT, INSERT and UPDATE on provider_configs cover the new column.
ALTER TABLE provider_configs ADD COLUMN allow_insecure_http BOOLEAN NOT NULL DEFAULT false;

-- +goose Down
ALTER TABLE provider_configs DROP COLUMN allow_insecure_http;
