package telemetry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/persiv/codex/edge/keyring"
)

// KeyOrg is the keyring org under which the edge-level telemetry secrets
// (the NATS seed, the pseudonym secret) are sealed. Its data keys live in
// KeyStore, in the telemetry directory, not in the SQL store: these
// secrets belong to this edge instance (one enrollment per data
// directory), not to any tenant, so no reserved row has to hide among the
// tenants' orgs, and the same file works over SQLite and Postgres.
const KeyOrg = "edge-telemetry"

// Record keys of the sealed secrets.
const (
	recordSeed      = "nats-seed"
	recordPseudonym = "pseudonym-secret"
)

// KeyStore is a keyring.Store kept in one JSON file, rewritten atomically
// on every change and re-read on every read, so a key created by the CLI
// (enroll) is seen by a running serve. It holds only wrapped data keys,
// and is read rarely: the keyring caches what it unwraps.
type KeyStore struct {
	path string
	mu   sync.Mutex
}

var _ keyring.Store = (*KeyStore)(nil)

type storedDEK struct {
	ID            string    `json:"id"`
	OrgID         string    `json:"org_id"`
	Generation    int       `json:"generation"`
	MasterRef     string    `json:"master_ref"`
	MasterVersion string    `json:"master_version"`
	Wrapped       []byte    `json:"wrapped"`
	CreatedAt     time.Time `json:"created_at"`
	RewrappedAt   time.Time `json:"rewrapped_at"`
	Seals         int64     `json:"seals,omitempty"`
}

// OpenKeyStore opens the key store at path (absent: empty) and checks
// that it parses.
func OpenKeyStore(path string) (*KeyStore, error) {
	s := &KeyStore{path: path}
	if _, err := s.load(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *KeyStore) load() (*keyring.MemStore, error) {
	mem := keyring.NewMemStore()
	var list []storedDEK
	if _, err := readJSON(s.path, &list); err != nil {
		return nil, fmt.Errorf("telemetry key store: %w", err)
	}
	// Oldest generation first: CreateDEK retires the earlier ones.
	slices.SortFunc(list, func(a, b storedDEK) int { return a.Generation - b.Generation })
	for _, d := range list {
		id, err := keyring.ParseDEKID(d.ID)
		if err != nil {
			return nil, fmt.Errorf("telemetry key store: %w", err)
		}
		w := keyring.WrappedDEK{ID: id, OrgID: d.OrgID, Generation: d.Generation, MasterRef: d.MasterRef,
			MasterVersion: d.MasterVersion, Wrapped: d.Wrapped, CreatedAt: d.CreatedAt, RewrappedAt: d.RewrappedAt, Seals: d.Seals}
		if err := mem.CreateDEK(context.Background(), w); err != nil {
			return nil, fmt.Errorf("telemetry key store: %w", err)
		}
	}
	return mem, nil
}

func (s *KeyStore) save(ctx context.Context, mem *keyring.MemStore) error {
	orgs, err := mem.DEKOrgs(ctx)
	if err != nil {
		return err
	}
	list := []storedDEK{}
	for _, org := range orgs {
		deks, err := mem.DEKs(ctx, org)
		if err != nil {
			return err
		}
		for _, d := range deks {
			list = append(list, storedDEK{ID: d.ID.String(), OrgID: d.OrgID, Generation: d.Generation, MasterRef: d.MasterRef,
				MasterVersion: d.MasterVersion, Wrapped: d.Wrapped, CreatedAt: d.CreatedAt, RewrappedAt: d.RewrappedAt, Seals: d.Seals})
		}
	}
	return writeJSON(s.path, list)
}

// update loads, applies f and saves.
func (s *KeyStore) update(ctx context.Context, f func(*keyring.MemStore) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	mem, err := s.load()
	if err != nil {
		return err
	}
	if err := f(mem); err != nil {
		return err
	}
	return s.save(ctx, mem)
}

func (s *KeyStore) read() (*keyring.MemStore, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.load()
}

// CreateDEK implements keyring.Store.
func (s *KeyStore) CreateDEK(ctx context.Context, d keyring.WrappedDEK) error {
	return s.update(ctx, func(m *keyring.MemStore) error { return m.CreateDEK(ctx, d) })
}

// DEKs implements keyring.Store.
func (s *KeyStore) DEKs(ctx context.Context, orgID string) ([]keyring.WrappedDEK, error) {
	m, err := s.read()
	if err != nil {
		return nil, err
	}
	return m.DEKs(ctx, orgID)
}

// UpdateWrapped implements keyring.Store.
func (s *KeyStore) UpdateWrapped(ctx context.Context, orgID string, id keyring.DEKID, w keyring.Wrap, at time.Time) error {
	return s.update(ctx, func(m *keyring.MemStore) error { return m.UpdateWrapped(ctx, orgID, id, w, at) })
}

// AddSeals implements keyring.Store.
func (s *KeyStore) AddSeals(ctx context.Context, orgID string, id keyring.DEKID, n int64) (int64, error) {
	var total int64
	err := s.update(ctx, func(m *keyring.MemStore) (err error) { total, err = m.AddSeals(ctx, orgID, id, n); return err })
	return total, err
}

// DeleteDEKs implements keyring.Store.
func (s *KeyStore) DeleteDEKs(ctx context.Context, orgID string) (int, error) {
	var n int
	err := s.update(ctx, func(m *keyring.MemStore) (err error) { n, err = m.DeleteDEKs(ctx, orgID); return err })
	return n, err
}

// DEKOrgs implements keyring.Store.
func (s *KeyStore) DEKOrgs(ctx context.Context) ([]string, error) {
	m, err := s.read()
	if err != nil {
		return nil, err
	}
	return m.DEKOrgs(ctx)
}

// writeJSON replaces path atomically with v's JSON encoding (mode 0600).
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", filepath.Base(path), err)
	}
	return writeFileAtomic(path, append(b, '\n'))
}

func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	// After the rename there is nothing left to remove.
	defer func() { _ = os.Remove(tmp.Name()) }()
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// readJSON decodes path into v; ok is false when the file does not exist.
func readJSON(path string, v any) (ok bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("parse %s: %w", path, err)
	}
	return true, nil
}
