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

// enrolling serializes enrollments through files within this process;
// a data directory belongs to one instance.
var enrolling sync.Mutex

// Enrolling implements EnrollState on the directory's enrollment file.
func (d Dir) Enrolling(ctx context.Context, fn func(cur Enrollment, ok bool) (Enrollment, bool, error)) error {
	enrolling.Lock()
	defer enrolling.Unlock()
	if err := d.Ensure(); err != nil {
		return err
	}
	cur, ok, err := d.Enrollment()
	if err != nil {
		return err
	}
	next, store, err := fn(cur, ok)
	if err != nil || !store {
		return err
	}
	return writeJSON(d.path("enrollment.json"), next)
}

// AppendLedger implements EnrollState: it appends to the ledger file. It
// does not keep a batch to one entry; Files does.
func (d Dir) AppendLedger(_ context.Context, e LedgerEntry, data []byte) error {
	if err := d.Ensure(); err != nil {
		return err
	}
	return NewLedger(d.LedgerPath()).Append(e, data)
}

// Files is the State of one instance, in its telemetry directory.
type Files struct {
	dir    Dir
	spool  *Spool
	ledger *Ledger

	mu   sync.Mutex
	prog Progress
}

var _ State = (*Files)(nil)

// OpenFiles opens the state kept in d, with a spool of at most maxBatches
// batches and maxBytes bytes.
func OpenFiles(d Dir, maxBatches int, maxBytes int64) (*Files, error) {
	if err := d.Ensure(); err != nil {
		return nil, err
	}
	sp, err := OpenSpool(d.path("spool"), maxBatches, maxBytes)
	if err != nil {
		return nil, err
	}
	f := &Files{dir: d, spool: sp, ledger: NewLedger(d.LedgerPath())}
	if f.prog, err = d.Progress(); err != nil {
		return nil, err
	}
	// A spooled batch whose number the progress file missed (a crash
	// between the two writes) must not have its number reused.
	f.prog.LastSeq = max(f.prog.LastSeq, sp.Stats().MaxSeq, f.prog.LedgerSeq)
	return f, nil
}

// Dir returns the telemetry directory.
func (f *Files) Dir() Dir { return f.dir }

// Enrolling implements State.
func (f *Files) Enrolling(ctx context.Context, fn func(cur Enrollment, ok bool) (Enrollment, bool, error)) error {
	return f.dir.Enrolling(ctx, fn)
}

// Enrollment implements State.
func (f *Files) Enrollment(context.Context) (Enrollment, bool, error) { return f.dir.Enrollment() }

// Sharing implements State.
func (f *Files) Sharing(context.Context) (Sharing, error) { return f.dir.Sharing() }

// SetSharing implements State.
func (f *Files) SetSharing(_ context.Context, sh Sharing) error {
	if err := f.dir.Ensure(); err != nil {
		return err
	}
	return writeJSON(f.dir.path("sharing.json"), sh)
}

// Progress implements State.
func (f *Files) Progress(context.Context) (Progress, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.prog, nil
}

// NextSeq implements State. The number is persisted before it is used:
// after a crash a number is skipped, never reused for different content.
func (f *Files) NextSeq(context.Context) (int64, error) {
	return f.update(func(p *Progress) { p.LastSeq++ })
}

// update changes the progress and saves it; it returns LastSeq.
func (f *Files) update(fn func(*Progress)) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.prog
	fn(&p)
	if err := f.dir.saveProgress(p); err != nil {
		return 0, err
	}
	f.prog = p
	return p.LastSeq, nil
}

// Put implements State.
func (f *Files) Put(_ context.Context, seq int64, data []byte) (int, error) {
	return f.spool.Put(seq, data)
}

// Claim implements State: one instance sends, so the oldest batch.
func (f *Files) Claim(context.Context) (Claimed, bool, error) {
	seq, data, ok, err := f.spool.Oldest()
	return Claimed{Seq: seq, Data: data}, ok, err
}

// Ack implements State.
func (f *Files) Ack(_ context.Context, seq int64, sent bool) error {
	if err := f.spool.Remove(seq); err != nil {
		return err
	}
	if !sent {
		return nil
	}
	_, err := f.update(func(p *Progress) { p.LastSentSeq, p.LastSentAt = seq, time.Now().UTC() })
	return err
}

// SpoolStats implements State.
func (f *Files) SpoolStats(context.Context) (SpoolStats, error) { return f.spool.Stats(), nil }

// AppendLedger implements State.
func (f *Files) AppendLedger(_ context.Context, e LedgerEntry, data []byte) error {
	if e.Kind != "" {
		return f.ledger.Append(e, data)
	}
	f.mu.Lock()
	done := e.Seq <= f.prog.LedgerSeq
	f.mu.Unlock()
	if done {
		return nil
	}
	if err := f.ledger.Append(e, data); err != nil {
		return err
	}
	_, err := f.update(func(p *Progress) { p.LedgerSeq = max(p.LedgerSeq, e.Seq) })
	return err
}

// Ledger implements State.
func (f *Files) Ledger(context.Context) ([]LedgerEntry, error) { return ReadLedger(f.dir.LedgerPath()) }
