-- +goose Up
-- The org's own master key (DESIGN §11, per-org master keys): the CODEX_KEK
-- form of the key its data keys are wrapped with ("awskms:<arn>"), or ''
-- for the edge's default master key (CODEX_KEK). Not secret: a reference.
ALTER TABLE orgs ADD COLUMN master_key TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE orgs DROP COLUMN master_key;
