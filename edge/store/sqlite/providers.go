package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/persiv/codex/edge"
)

// SetProvider creates or replaces how an existing org reaches a provider.
// A zero UpdatedAt is set to the current time.
func (db *DB) SetProvider(ctx context.Context, p edge.ProviderConfig) error {
	if err := p.Prepare(); err != nil {
		return fmt.Errorf("set provider: %w", err)
	}
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		if err := orgExists(ctx, tx, p.OrgID); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx,
			`INSERT INTO provider_configs (org_id, provider, base_url, api_key_env, sealed_key, allow_insecure_http, updated_at)
			 VALUES (?, ?, ?, ?, ?, ?, ?)
			 ON CONFLICT (org_id, provider) DO UPDATE SET
			   base_url = excluded.base_url,
			   api_key_env = excluded.api_key_env,
			   sealed_key = excluded.sealed_key,
			   allow_insecure_http = excluded.allow_insecure_http,
			   updated_at = excluded.updated_at`,
			p.OrgID, string(p.Provider), p.BaseURL, p.APIKeyEnv, nilIfEmpty(p.SealedKey), p.AllowInsecureHTTP, p.UpdatedAt.UnixNano())
		if err != nil {
			return err
		}
		return recordChange(ctx, tx, p.OrgID, "provider", string(p.Provider), p.UpdatedAt)
	})
	return wrap(fmt.Sprintf("set provider %q", p.Provider), err)
}

// Providers returns the org's provider settings, by provider name.
func (db *DB) Providers(ctx context.Context, orgID string) ([]edge.ProviderConfig, error) {
	rows, err := db.read.QueryContext(ctx,
		`SELECT org_id, provider, base_url, api_key_env, sealed_key, allow_insecure_http, updated_at
		 FROM provider_configs WHERE org_id = ? ORDER BY provider`, orgID)
	if err != nil {
		return nil, wrap("list providers", err)
	}
	defer rows.Close()
	var out []edge.ProviderConfig
	for rows.Next() {
		var (
			p        edge.ProviderConfig
			provider string
			updated  sql.NullInt64
		)
		if err := rows.Scan(&p.OrgID, &provider, &p.BaseURL, &p.APIKeyEnv, &p.SealedKey, &p.AllowInsecureHTTP, &updated); err != nil {
			return nil, wrap("list providers", err)
		}
		p.Provider = edge.Provider(provider)
		p.UpdatedAt = fromNanos(updated)
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("list providers", err)
	}
	return out, nil
}

// nilIfEmpty stores an empty byte slice as NULL.
func nilIfEmpty(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}
