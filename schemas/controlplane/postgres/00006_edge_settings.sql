-- An edge's metadata minimization settings (dimensions withheld, minimum
-- row count, heartbeat) as its latest batch carried them, as JSON; NULL
-- until a batch with settings arrives (earlier edges send none).

-- +goose Up
ALTER TABLE edges ADD COLUMN settings TEXT;

-- +goose Down
ALTER TABLE edges DROP COLUMN settings;
