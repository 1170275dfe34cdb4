-- The instance a batch came from: the random id the edge process that
-- aggregated it drew at start (wire.UsageBatch.Instance), so the fleet page
-- can count the replicas of a deployment, which share one edge id. NULL for
-- batches from edges before the field.

-- +goose Up
ALTER TABLE usage_batches ADD COLUMN instance TEXT;

-- +goose Down
ALTER TABLE usage_batches DROP COLUMN instance;
