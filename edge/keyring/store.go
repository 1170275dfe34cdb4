package keyring

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/persiv/codex/edge"
)

// DEKState is the life-cycle state of a data key.
type DEKState string

const (
	// DEKActive is the one DEK of an org that new writes use.
	DEKActive DEKState = "active"
	// DEKRetired DEKs only open what was written under them.
	DEKRetired DEKState = "retired"
)

// WrappedDEK is a data key as stored: only its wrapped form, never the key.
type WrappedDEK struct {
	ID            DEKID
	OrgID         string
	Generation    int // 1, 2, … per org; the highest is the active one
	State         DEKState
	MasterRef     string // Wrap.Ref
	MasterVersion string // Wrap.Version
	Wrapped       []byte // Wrap.Blob
	CreatedAt     time.Time
	RewrappedAt   time.Time // zero until first rewrap
	// Seals counts the seals reserved under this DEK by every instance
	// (Store.AddSeals). Seals are reserved before they are made, so it is
	// never below the number made, across restarts and instances.
	Seals int64
}

// wrap returns the wrapped form as a Wrap.
func (d WrappedDEK) wrap() Wrap {
	return Wrap{Ref: d.MasterRef, Version: d.MasterVersion, Blob: d.Wrapped}
}

// LogValue prints metadata only.
func (d WrappedDEK) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("org_id", d.OrgID), slog.String("dek_id", d.ID.String()),
		slog.Int("generation", d.Generation), slog.String("state", string(d.State)),
		slog.String("master_ref", d.MasterRef), slog.String("master_version", d.MasterVersion))
}

// Store persists wrapped DEKs. The edge's SQL stores implement it on a
// table like schemas/crypto/ciphertext.md describes:
//
//	CREATE TABLE data_keys (
//	    org_id         TEXT    NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
//	    id             TEXT    NOT NULL,          -- DEKID.String(), a UUID
//	    generation     INTEGER NOT NULL,
//	    state          TEXT    NOT NULL CHECK (state IN ('active','retired')),
//	    master_ref     TEXT    NOT NULL,
//	    master_version TEXT    NOT NULL,
//	    wrapped        BLOB    NOT NULL,          -- BYTEA in Postgres
//	    created_at     TIMESTAMP NOT NULL,
//	    rewrapped_at   TIMESTAMP,                 -- NULL until rewrapped
//	    seals          BIGINT  NOT NULL DEFAULT 0,
//	    PRIMARY KEY (org_id, id),
//	    UNIQUE (org_id, generation)
//	);
//
// Every method is scoped by org except DEKOrgs, which the rewrap and status
// commands use. Errors use the edge vocabulary (edge.ErrConflict,
// edge.ErrNotFound).
type Store interface {
	// CreateDEK inserts d (State active, with its Seals, 0 for a new key)
	// and, in the same transaction,
	// marks every other DEK of d.OrgID retired. It fails with
	// edge.ErrConflict when the org already has a DEK of d.Generation
	// (two instances creating the first key, or two rotations, at once).
	CreateDEK(ctx context.Context, d WrappedDEK) error
	// DEKs returns every DEK of the org, highest generation first; none is
	// not an error.
	DEKs(ctx context.Context, orgID string) ([]WrappedDEK, error)
	// UpdateWrapped replaces master_ref, master_version and wrapped of one
	// DEK and sets rewrapped_at = at; edge.ErrNotFound if it is gone.
	UpdateWrapped(ctx context.Context, orgID string, id DEKID, w Wrap, at time.Time) error
	// AddSeals adds n to the Seals of one DEK and returns the new count;
	// edge.ErrNotFound if it is gone. Concurrent calls, from any instance,
	// must each see their own addition (one atomic UPDATE … RETURNING).
	// It is called once per Options.SealLease seals, never per seal.
	AddSeals(ctx context.Context, orgID string, id DEKID, n int64) (int64, error)
	// DeleteDEKs deletes every DEK of the org and returns how many.
	DeleteDEKs(ctx context.Context, orgID string) (int, error)
	// DEKOrgs returns the ids of every org that has at least one DEK.
	DEKOrgs(ctx context.Context) ([]string, error)
}

// MemStore is an in-memory Store for tests and for the contract that SQL
// stores must meet. The zero value is ready to use.
type MemStore struct {
	mu   sync.Mutex
	deks map[string][]WrappedDEK // org → DEKs, highest generation first
}

var _ Store = (*MemStore)(nil)

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore { return &MemStore{} }

func cloneDEK(d WrappedDEK) WrappedDEK {
	d.Wrapped = slices.Clone(d.Wrapped)
	return d
}

// CreateDEK implements Store.
func (s *MemStore) CreateDEK(ctx context.Context, d WrappedDEK) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.deks == nil {
		s.deks = make(map[string][]WrappedDEK)
	}
	list := s.deks[d.OrgID]
	for _, o := range list {
		if o.Generation == d.Generation || o.ID == d.ID {
			return fmt.Errorf("create dek: org %s generation %d: %w", d.OrgID, d.Generation, edge.ErrConflict)
		}
	}
	for i := range list {
		list[i].State = DEKRetired
	}
	d = cloneDEK(d)
	d.State = DEKActive
	list = append(list, d)
	slices.SortFunc(list, func(a, b WrappedDEK) int { return b.Generation - a.Generation })
	s.deks[d.OrgID] = list
	return nil
}

// DEKs implements Store.
func (s *MemStore) DEKs(ctx context.Context, orgID string) ([]WrappedDEK, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]WrappedDEK, 0, len(s.deks[orgID]))
	for _, d := range s.deks[orgID] {
		out = append(out, cloneDEK(d))
	}
	return out, nil
}

// UpdateWrapped implements Store.
func (s *MemStore) UpdateWrapped(ctx context.Context, orgID string, id DEKID, w Wrap, at time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	list := s.deks[orgID]
	for i := range list {
		if list[i].ID == id {
			list[i].MasterRef, list[i].MasterVersion = w.Ref, w.Version
			list[i].Wrapped = slices.Clone(w.Blob)
			list[i].RewrappedAt = at
			return nil
		}
	}
	return fmt.Errorf("update wrapped dek %s: %w", id, edge.ErrNotFound)
}

// AddSeals implements Store.
func (s *MemStore) AddSeals(ctx context.Context, orgID string, id DEKID, n int64) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	list := s.deks[orgID]
	for i := range list {
		if list[i].ID == id {
			list[i].Seals += n
			return list[i].Seals, nil
		}
	}
	return 0, fmt.Errorf("add seals to dek %s: %w", id, edge.ErrNotFound)
}

// DeleteDEKs implements Store.
func (s *MemStore) DeleteDEKs(ctx context.Context, orgID string) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.deks[orgID])
	delete(s.deks, orgID)
	return n, nil
}

// DEKOrgs implements Store.
func (s *MemStore) DEKOrgs(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.deks))
	for org := range s.deks {
		out = append(out, org)
	}
	slices.Sort(out)
	return out, nil
}
