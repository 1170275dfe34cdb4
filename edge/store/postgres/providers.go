package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/persiv/codex/edge"
)

// SetProvider creates or replaces how an existing org reaches a provider.
// A zero UpdatedAt is set to the current time.
func (db *DB) SetProvider(ctx context.Context, p edge.ProviderConfig) error {
	if err := p.Prepare(); err != nil {
		return fmt.Errorf("set provider: %w", err)
	}
	var sealed []byte
	if len(p.SealedKey) > 0 {
		sealed = p.SealedKey
	}
	err := db.inOrg(ctx, p.OrgID, func(tx pgx.Tx) error {
		if err := orgExists(ctx, tx, p.OrgID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx,
			`INSERT INTO provider_configs (org_id, provider, base_url, api_key_env, sealed_key, allow_insecure_http, updated_at)
			 VALUES ($1, $2, $3, $4, $5, $6, $7)
			 ON CONFLICT (org_id, provider) DO UPDATE SET
			   base_url = excluded.base_url,
			   api_key_env = excluded.api_key_env,
			   sealed_key = excluded.sealed_key,
			   allow_insecure_http = excluded.allow_insecure_http,
			   updated_at = excluded.updated_at`,
			p.OrgID, string(p.Provider), p.BaseURL, p.APIKeyEnv, sealed, p.AllowInsecureHTTP, p.UpdatedAt)
		if err != nil {
			return err
		}
		return recordChange(ctx, tx, p.OrgID, "provider", string(p.Provider), p.UpdatedAt)
	})
	return wrap(fmt.Sprintf("set provider %q", p.Provider), err)
}

// Providers returns the org's provider settings, by provider name.
func (db *DB) Providers(ctx context.Context, orgID string) ([]edge.ProviderConfig, error) {
	var out []edge.ProviderConfig
	err := db.inOrg(ctx, orgID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx,
			`SELECT org_id, provider, base_url, api_key_env, sealed_key, allow_insecure_http, updated_at
			 FROM provider_configs WHERE org_id = $1 ORDER BY provider`, orgID)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				p        edge.ProviderConfig
				provider string
			)
			if err := rows.Scan(&p.OrgID, &provider, &p.BaseURL, &p.APIKeyEnv, &p.SealedKey, &p.AllowInsecureHTTP, &p.UpdatedAt); err != nil {
				return err
			}
			p.Provider = edge.Provider(provider)
			p.UpdatedAt = p.UpdatedAt.UTC()
			out = append(out, p)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, wrap("list providers", err)
	}
	return out, nil
}
