-- Invitations can be revoked before they are used: a revoked one is never
-- listed, found or redeemed again, and its row stays as a record.

-- +goose Up
ALTER TABLE invites ADD COLUMN revoked_at INTEGER;

-- +goose Down
ALTER TABLE invites DROP COLUMN revoked_at;
