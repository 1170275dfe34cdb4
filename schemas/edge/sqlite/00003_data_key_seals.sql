-- +goose Up
-- Seals reserved under each data key by every instance, reserved before
-- they are made: the keyring replaces a key well before AES-GCM's limit of
-- 2^32 random-nonce seals (CODEX_DEK_MAX_SEALS). Keys made before this
-- migration count from 0; their age (CODEX_DEK_MAX_AGE) still bounds them.
ALTER TABLE data_keys ADD COLUMN seals INTEGER NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE data_keys DROP COLUMN seals;
