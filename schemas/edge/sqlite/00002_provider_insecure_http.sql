-- +goose Up
-- Plain http to a non-loopback provider host is refused unless the operator
-- allowed it explicitly (codex-edge providers set --allow-insecure-http);
-- the edge checks again when it loads the setting.
ALTER TABLE provider_configs ADD COLUMN allow_insecure_http INTEGER NOT NULL DEFAULT 0 CHECK (allow_insecure_http IN (0, 1));

-- +goose Down
ALTER TABLE provider_configs DROP COLUMN allow_insecure_http;
