package postgres_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/persiv/codex/controlplane"
	"github.com/persiv/codex/controlplane/store/postgres"
	"github.com/persiv/codex/controlplane/store/postgres/pgtest"
	"github.com/persiv/codex/controlplane/store/storetest"
)

// freshDB creates a migrated database for one test and returns its owner
// and application URLs.
func freshDB(tb testing.TB) (owner, app string) { return pgtest.FreshDB(tb) }

func open(tb testing.TB) controlplane.Store {
	tb.Helper()
	_, app := freshDB(tb)
	s, err := postgres.Open(context.Background(), app)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func TestContract(t *testing.T) { storetest.Run(t, open) }

// TestForcedRLSOnEveryTenantTable: every table with an org_id column, and
// orgs, has row-level security enabled and forced, and is listed.
func TestForcedRLSOnEveryTenantTable(t *testing.T) {
	owner, _ := freshDB(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, owner)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
		AND (c.relname = 'orgs' OR EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'org_id' AND NOT a.attisdropped))
		ORDER BY c.relname`)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for rows.Next() {
		var name string
		var enabled, forced bool
		if err := rows.Scan(&name, &enabled, &forced); err != nil {
			t.Fatal(err)
		}
		if !enabled || !forced {
			t.Errorf("table %s: row security enabled=%v forced=%v", name, enabled, forced)
		}
		names = append(names, name)
	}
	want := slices.Clone(postgres.TenantTables)
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Errorf("tenant tables %v, want %v", names, want)
	}
}

func TestAppRoleCannotBypassRLS(t *testing.T) {
	owner, app := freshDB(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, app)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var super, bypass bool
	var owned int
	if err := conn.QueryRow(ctx, `SELECT rolsuper, rolbypassrls, (SELECT count(*) FROM pg_class WHERE relowner = r.oid)
		FROM pg_roles r WHERE rolname = current_user`).Scan(&super, &bypass, &owned); err != nil {
		t.Fatal(err)
	}
	if super || bypass || owned != 0 {
		t.Fatalf("app role: superuser=%v bypassrls=%v owns %d relations", super, bypass, owned)
	}
	if s, err := postgres.Open(ctx, owner); err == nil {
		s.Close()
		t.Fatal("store opened as the table owner")
	}
}

// TestNoOrgSeesNothing writes through the store, then reads with the app
// role directly: without app.org_id, or with another org's, nothing is
// visible and nothing can be written for another org.
func TestNoOrgSeesNothing(t *testing.T) {
	_, app := freshDB(t)
	ctx := context.Background()
	s, err := postgres.Open(ctx, app)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	org, other := storetest.MustOrg(t, s), storetest.MustOrg(t, s)
	e := storetest.MustEdge(t, s, org)
	if _, err := s.IngestBatch(ctx, storetest.Batch(org, e.ID, 1, time.Now().UTC(), 2), time.Now()); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, app)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	count := func(setOrg string) map[string]int {
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if setOrg != "" {
			if _, err := tx.Exec(ctx, `SELECT set_config('app.org_id', $1, true)`, setOrg); err != nil {
				t.Fatal(err)
			}
		}
		out := map[string]int{}
		for _, table := range postgres.TenantTables {
			var n int
			if err := tx.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
				t.Fatal(err)
			}
			out[table] = n
		}
		return out
	}
	for name, setOrg := range map[string]string{"no org": "", "another org": other} {
		for table, n := range count(setOrg) {
			if table == "orgs" && setOrg == other {
				if n != 1 {
					t.Errorf("%s: sees %d orgs, want its own", name, n)
				}
				continue
			}
			if n != 0 {
				t.Errorf("%s: sees %d rows of %s", name, n, table)
			}
		}
	}
	if got := count(org); got["usage_minute"] != 2 || got["edges"] != 1 || got["orgs"] != 1 {
		t.Fatalf("own org sees %v", got)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT set_config('app.org_id', $1, true)`, other); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO edges (id, org_id, name, version, public_key, created_at) VALUES ('edge_x', $1, 'x', '1', 'Ux', now())`, org); err == nil {
		t.Fatal("wrote a row for another org")
	}
}

func BenchmarkIngest(b *testing.B) { storetest.BenchIngest(b, open) }

func BenchmarkUsage30Days(b *testing.B) { storetest.BenchUsage30Days(b, open) }
