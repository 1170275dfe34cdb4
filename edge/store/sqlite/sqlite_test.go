package sqlite

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/keyring"
	"github.com/persiv/codex/edge/keyring/keyringtest"
	"github.com/persiv/codex/edge/store/storetest"
	"github.com/persiv/codex/schemas"
)

// mustOpen opens a store in a new directory, closed when the test ends.
func mustOpen(t testing.TB, dir string) *DB {
	t.Helper()
	db, err := Open(context.Background(), dir)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return db
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) edge.Store { return mustOpen(t, t.TempDir()) })
}

// TestContractSharedStore runs the suite on one store for every subtest, as
// a Postgres run against one database does: the suite must not assume an
// empty store.
func TestContractSharedStore(t *testing.T) {
	db := mustOpen(t, t.TempDir())
	storetest.Run(t, func(t *testing.T) edge.Store { return db })
}

func TestFilePermissions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	db := mustOpen(t, dir)
	// Write something so the -wal and -shm files exist.
	if err := db.CreateOrg(t.Context(), edge.Org{ID: "o1", Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o700 {
		t.Errorf("data directory mode = %v, want 0700", got)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		seen[e.Name()] = true
		if got := fi.Mode().Perm(); got != 0o600 {
			t.Errorf("%s mode = %v, want 0600", e.Name(), got)
		}
	}
	for _, name := range []string{FileName, FileName + "-wal", FileName + "-shm"} {
		if !seen[name] {
			t.Errorf("%s missing from the data directory (have %v)", name, seen)
		}
	}
}

func TestTightensExistingFiles(t *testing.T) {
	dir := t.TempDir()
	db := mustOpen(t, dir)
	if err := db.CreateOrg(t.Context(), edge.Org{ID: "o1", Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, FileName)
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	mustOpen(t, dir)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("after reopening, mode = %v, want 0600", got)
	}
}

func TestPragmas(t *testing.T) {
	db := mustOpen(t, t.TempDir())
	tests := []struct {
		pragma string
		want   string
	}{
		{"journal_mode", "wal"},
		{"foreign_keys", "1"},
		{"secure_delete", "1"},
		{"busy_timeout", strconv.FormatInt(busyTimeout.Milliseconds(), 10)},
		{"synchronous", "2"},
		{"temp_store", "2"},
	}
	for _, tt := range tests {
		for name, pool := range map[string]queryer{"write": db.write, "read": db.read} {
			var got string
			if err := pool.QueryRowContext(t.Context(), "PRAGMA "+tt.pragma).Scan(&got); err != nil {
				t.Fatalf("%s pool: PRAGMA %s: %v", name, tt.pragma, err)
			}
			if got != tt.want {
				t.Errorf("%s pool: PRAGMA %s = %s, want %s", name, tt.pragma, got, tt.want)
			}
		}
	}
	// The read pool refuses writes.
	if _, err := db.read.ExecContext(t.Context(), `DELETE FROM orgs`); err == nil {
		t.Errorf("read pool accepted a write")
	}
}

type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func TestMigrationsIdempotent(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	want := latestMigration(t)

	db, err := Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.CreateOrg(ctx, edge.Org{ID: "o1", Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		db := mustOpen(t, dir)
		v, err := db.SchemaVersion(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if v != want {
			t.Errorf("open %d: schema version %d, want %d", i, v, want)
		}
		var applied int
		if err := db.read.QueryRowContext(ctx, `SELECT count(*) FROM goose_db_version WHERE version_id = ?`, want).Scan(&applied); err != nil {
			t.Fatal(err)
		}
		if applied != 1 {
			t.Errorf("open %d: migration %d recorded %d times, want once", i, want, applied)
		}
		if _, err := db.Org(ctx, "o1"); err != nil {
			t.Errorf("open %d: org lost: %v", i, err)
		}
	}
}

// latestMigration is the highest version among the embedded migrations.
func latestMigration(t *testing.T) int64 {
	t.Helper()
	names, err := fs.Glob(schemas.EdgeSQLite(), "*.sql")
	if err != nil || len(names) == 0 {
		t.Fatalf("embedded migrations: %v, %v", names, err)
	}
	var latest int64
	for _, n := range names {
		var v int64
		if _, err := fmt.Sscanf(n, "%d_", &v); err != nil {
			t.Fatalf("migration %s: %v", n, err)
		}
		latest = max(latest, v)
	}
	return latest
}

func TestOpenInvalid(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"", filepath.Join(t.TempDir(), "what?"), file} {
		if db, err := Open(t.Context(), dir); err == nil {
			db.Close()
			t.Errorf("Open(%q) succeeded", dir)
		}
	}
}

// writeSome creates an org, keys and request records through db, as one
// process of the edge would, and returns the org's id.
func writeSome(ctx context.Context, db *DB, name string, keys, batches int) (string, error) {
	org := edge.Org{ID: "org_" + name, Name: name}
	if err := db.CreateOrg(ctx, org); err != nil {
		return "", err
	}
	for i := range keys {
		k := edge.APIKey{
			ID:     fmt.Sprintf("key_%s_%d", name, i),
			OrgID:  org.ID,
			Name:   "k",
			Prefix: "pk_",
			Hash:   sha256.Sum256(fmt.Appendf(nil, "%s-%d", name, i)),
		}
		if err := db.CreateKey(ctx, k); err != nil {
			return "", err
		}
		if batches > 0 {
			recs := make([]edge.RequestRecord, batches)
			for j := range recs {
				recs[j] = storetest.SampleRecord(org.ID, k.ID, fmt.Sprintf("req_%s_%d_%d", name, i, j), time.Now())
			}
			if err := db.InsertRequests(ctx, recs); err != nil {
				return "", err
			}
		}
	}
	return org.ID, nil
}

func checkWritten(t *testing.T, db *DB, orgID string, keys, batches int) {
	t.Helper()
	got, err := db.Keys(t.Context(), orgID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != keys {
		t.Errorf("org %s has %d keys, want %d", orgID, len(got), keys)
	}
	recs, err := db.Requests(t.Context(), orgID, time.Time{}, 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != keys*batches {
		t.Errorf("org %s has %d records, want %d", orgID, len(recs), keys*batches)
	}
}

// TestTwoHandles opens one directory twice, as the CLI and `serve` do, and
// writes through both at once.
func TestTwoHandles(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	const keys, batch = 30, 50

	// Open both at once on a new directory: both apply migrations.
	dbs := make([]*DB, 2)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range dbs {
		wg.Go(func() { dbs[i], errs[i] = Open(ctx, dir) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Open %d: %v", i, err)
		}
		t.Cleanup(func() { dbs[i].Close() })
	}

	orgs := make([]string, 2)
	for i, db := range dbs {
		wg.Go(func() { orgs[i], errs[i] = writeSome(ctx, db, fmt.Sprintf("handle%d", i), keys, batch) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("handle %d: %v", i, err)
		}
	}
	// Each handle sees the other's writes.
	for _, db := range dbs {
		for _, org := range orgs {
			checkWritten(t, db, org, keys, batch)
		}
	}
}

// helperEnv makes the test binary a second writer process (see TestMain).
const helperEnv = "CODEX_SQLITE_TEST_WRITER_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(helperEnv); dir != "" {
		db, err := Open(context.Background(), dir)
		if err == nil {
			_, err = writeSome(context.Background(), db, os.Getenv(helperEnv+"_NAME"), 30, 50)
			err = errors.Join(err, db.Close())
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestTwoProcesses runs writers in two other processes and this one, all
// starting on a new directory.
func TestTwoProcesses(t *testing.T) {
	dir := t.TempDir()
	var cmds []*exec.Cmd
	for i := range 2 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), helperEnv+"="+dir, fmt.Sprintf("%s_NAME=proc%d", helperEnv, i))
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	db := mustOpen(t, dir)
	self, err := writeSome(t.Context(), db, "self", 30, 50)
	if err != nil {
		t.Fatalf("writing beside two other processes: %v", err)
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("writer process %d: %v", i, err)
		}
	}
	for _, org := range []string{self, "org_proc0", "org_proc1"} {
		checkWritten(t, db, org, 30, 50)
	}
}

func TestChangesPaged(t *testing.T) {
	db := mustOpen(t, t.TempDir())
	ctx := t.Context()
	const n = changesPage + 234
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		for i := range n {
			if err := recordChange(ctx, tx, "o", "key", strconv.Itoa(i), time.Now()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	first, err := db.Changes(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != changesPage {
		t.Fatalf("first page has %d entries, want %d", len(first), changesPage)
	}
	rest, err := db.Changes(ctx, first[len(first)-1].Seq)
	if err != nil {
		t.Fatal(err)
	}
	if len(rest) != n-changesPage || rest[0].Ref != strconv.Itoa(changesPage) {
		t.Errorf("second page: %d entries from %+v, want %d from ref %d", len(rest), rest[0], n-changesPage, changesPage)
	}
}

// TestCanaryFoundInDatabase proves the scan sees what the store writes,
// in the WAL while open and in the database file after close.
func TestCanaryFoundInDatabase(t *testing.T) {
	dir := t.TempDir()
	const canary = "CANARY-org-name-5b1d0e"
	db, err := Open(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.CreateOrg(t.Context(), edge.Org{ID: "o1", Name: canary}); err != nil {
		t.Fatal(err)
	}
	for _, when := range []string{"open", "closed"} {
		if when == "closed" {
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
		}
		found, err := storetest.FindCanaries(dir, canary)
		if err != nil {
			t.Fatal(err)
		}
		if len(found) == 0 {
			t.Errorf("store %s: canary stored as an org name not found under %s", when, dir)
		}
	}
}

// TestSecureDelete checks that an overwritten value leaves no trace in the
// data directory once the store is closed.
func TestSecureDelete(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	const old = "OLD_CREDENTIAL_ENV_CANARY"
	db, err := Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.CreateOrg(ctx, edge.Org{ID: "o1", Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	p := edge.ProviderConfig{OrgID: "o1", Provider: edge.OpenAI, APIKeyEnv: old}
	if err := db.SetProvider(ctx, p); err != nil {
		t.Fatal(err)
	}
	// A row stored after the old one, and a new value longer than the old,
	// keep SQLite from reusing the old row's bytes in the page: only
	// secure_delete clears them.
	if err := db.SetProvider(ctx, edge.ProviderConfig{OrgID: "o1", Provider: edge.Anthropic, APIKeyEnv: "A"}); err != nil {
		t.Fatal(err)
	}
	p.APIKeyEnv = strings.Repeat("NEW_", 64)
	if err := db.SetProvider(ctx, p); err != nil {
		t.Fatal(err)
	}
	// While open, the WAL still holds the page as it was before the update;
	// closing checkpoints and removes it.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	storetest.ScanDirForCanaries(t, dir, old)
}

func TestErrorKinds(t *testing.T) {
	db := mustOpen(t, t.TempDir())
	ctx := t.Context()
	if err := db.CreateOrg(ctx, edge.Org{ID: "o1", Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	// Constraints the Go checks do not cover still map to edge kinds.
	_, err := db.write.ExecContext(ctx, `INSERT INTO orgs (id, name, created_at, fingerprint_secret) VALUES ('o2', 'acme', 0, x'00')`)
	if got := wrap("op", err); !errors.Is(got, edge.ErrConflict) {
		t.Errorf("unique violation: %v, want ErrConflict", got)
	}
	_, err = db.write.ExecContext(ctx, `INSERT INTO api_keys (id, org_id, name, prefix, hash, state, created_at) VALUES ('k', 'nope', '', '', zeroblob(32), 'active', 0)`)
	if got := wrap("op", err); !errors.Is(got, edge.ErrConflict) {
		t.Errorf("foreign key violation: %v, want ErrConflict", got)
	}
	_, err = db.write.ExecContext(ctx, `INSERT INTO api_keys (id, org_id, name, prefix, hash, state, created_at) VALUES ('k', 'o1', '', '', zeroblob(32), 'lost', 0)`)
	if got := wrap("op", err); !errors.Is(got, edge.ErrInvalid) {
		t.Errorf("check violation: %v, want ErrInvalid", got)
	}
	if got := wrap("op", sql.ErrNoRows); !errors.Is(got, edge.ErrNotFound) {
		t.Errorf("no rows: %v, want ErrNotFound", got)
	}
	if got := wrap("op", errors.New("disk on fire")); errors.Is(got, edge.ErrConflict) || errors.Is(got, edge.ErrNotFound) || errors.Is(got, edge.ErrInvalid) {
		t.Errorf("other error mapped to a kind: %v", got)
	}
}

// TestKeyringContract runs the keyring's store contract on SQLite; the
// contract names its orgs org_a, org_b and org_c.
func TestKeyringContract(t *testing.T) {
	keyringtest.StoreContract(t, func(t *testing.T) keyring.Store {
		db := mustOpen(t, t.TempDir())
		for _, id := range []string{"org_a", "org_b", "org_c"} {
			if err := db.CreateOrg(t.Context(), edge.Org{ID: id, Name: id}); err != nil {
				t.Fatal(err)
			}
		}
		return db
	})
}

func TestAuditContract(t *testing.T) {
	storetest.RunAudit(t, func(t *testing.T) storetest.AuditStore { return mustOpen(t, t.TempDir()) })
}

// TestAppendAuditPlan: appending a batch looks its ids up in the id index,
// so that its cost does not grow with the org's log. The planner once
// walked every event of the org, and the edge's throughput fell as the log
// grew.
func TestAppendAuditPlan(t *testing.T) {
	db := mustOpen(t, t.TempDir())
	rows, err := db.write.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+storedIDsSQL, `["a","b"]`, "o1")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(plan, "\n")
	if !strings.Contains(joined, "SEARCH e USING INDEX sqlite_autoindex_audit_events_1 (id=?)") || strings.Contains(joined, "audit_events_org_time") {
		t.Errorf("plan of the stored-ids lookup:\n%s\nwant a search of the id index per given id", joined)
	}
}
