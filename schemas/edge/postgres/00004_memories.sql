-- +goose Up
-- Memories (DESIGN §10): named text blocks of an org (key_id '') or of one
-- of its keys, injected into requests as the provider's system
-- instruction. One row per memory holds its latest version; the text is
-- sealed by the org's data key (purpose memory) and NULL once removed, the
-- version kept so that the next set follows on and name@version always
-- names one text. bytes and tokens (an estimate) are metadata.
CREATE TABLE memories (
    org_id     TEXT COLLATE "C" NOT NULL REFERENCES orgs (id),
    key_id     TEXT COLLATE "C" NOT NULL,
    name       TEXT COLLATE "C" NOT NULL CHECK (name <> ''),
    version    BIGINT NOT NULL CHECK (version > 0),
    sealed     BYTEA,
    bytes      BIGINT NOT NULL CHECK (bytes >= 0),
    tokens     BIGINT NOT NULL CHECK (tokens >= 0),
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (org_id, key_id, name)
);

ALTER TABLE memories ENABLE ROW LEVEL SECURITY;
ALTER TABLE memories FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON memories
    USING (org_id = current_setting('app.org_id', true))
    WITH CHECK (org_id = current_setting('app.org_id', true));

-- The estimated tokens of the memories injected into a request (its
-- memory_id lists them as name@version,...); 0 when none was.
ALTER TABLE requests ADD COLUMN memory_tokens_estimate BIGINT NOT NULL DEFAULT 0;

-- A set or removed memory is a change other instances follow.
ALTER TABLE changes DROP CONSTRAINT changes_kind_check;
ALTER TABLE changes ADD CONSTRAINT changes_kind_check
    CHECK (kind IN ('key', 'provider', 'org', 'dek', 'memory'));

-- +goose StatementBegin
DO $$
DECLARE
    app TEXT := current_setting('codex.app_role', true);
BEGIN
    IF app IS NULL OR app = '' THEN
        RAISE EXCEPTION 'codex.app_role is not set: run migrations with codex-edge migrate';
    END IF;
    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON memories TO %I', app);
END;
$$;
-- +goose StatementEnd

-- +goose Down
DELETE FROM changes WHERE kind = 'memory';
ALTER TABLE changes DROP CONSTRAINT changes_kind_check;
ALTER TABLE changes ADD CONSTRAINT changes_kind_check
    CHECK (kind IN ('key', 'provider', 'org', 'dek'));
ALTER TABLE requests DROP COLUMN memory_tokens_estimate;
DROP TABLE memories;
