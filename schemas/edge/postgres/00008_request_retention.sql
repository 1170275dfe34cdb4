-- Request metadata is kept CODEX_RETENTION: serve deletes older records
-- in batches, per org under row-level security, so the application role
-- may now delete request rows (still only its org's).

-- +goose Up
-- +goose StatementBegin
DO $$
DECLARE
    app TEXT := current_setting('codex.app_role', true);
BEGIN
    IF app IS NULL OR app = '' THEN
        RAISE EXCEPTION 'codex.app_role is not set: run migrations with codex-edge migrate';
    END IF;
    EXECUTE format('GRANT DELETE ON requests TO %I', app);
END;
$$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
DO $$
DECLARE
    app TEXT := current_setting('codex.app_role', true);
BEGIN
    IF app IS NOT NULL AND app <> '' THEN
        EXECUTE format('REVOKE DELETE ON requests FROM %I', app);
    END IF;
END;
$$;
-- +goose StatementEnd
