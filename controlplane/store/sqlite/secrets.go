package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/persiv/codex/controlplane"
)

// DeploymentSecret returns the sealed secret stored under name
// (controlplane.ErrNotFound when there is none).
func (s *Store) DeploymentSecret(ctx context.Context, name string) ([]byte, error) {
	var sealed []byte
	err := s.db.QueryRowContext(ctx, `SELECT sealed FROM deployment_secrets WHERE name = ?`, name).Scan(&sealed)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("deployment secret %q: %w", name, controlplane.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("deployment secret %q: %w", name, err)
	}
	return sealed, nil
}

// AddDeploymentSecret stores sealed under name unless a secret is stored
// there already, and returns the one stored.
func (s *Store) AddDeploymentSecret(ctx context.Context, name string, sealed []byte) ([]byte, error) {
	res, err := s.db.ExecContext(ctx, `INSERT INTO deployment_secrets (name, sealed, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING`,
		name, sealed, time.Now().UnixNano())
	if err != nil {
		return nil, fmt.Errorf("add deployment secret %q: %w", name, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 1 {
		return sealed, nil
	}
	return s.DeploymentSecret(ctx, name)
}
