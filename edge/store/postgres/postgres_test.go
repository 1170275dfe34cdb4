package postgres_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/keyring"
	"github.com/persiv/codex/edge/keyring/keyringtest"
	"github.com/persiv/codex/edge/store/postgres"
	"github.com/persiv/codex/edge/store/postgres/pgtest"
	"github.com/persiv/codex/edge/store/storetest"
)

// TestContract runs the store contract suite, each subtest on its own
// fresh database, as the application role.
func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) edge.Store {
		_, app := pgtest.FreshDB(t)
		return pgtest.Open(t, app)
	})
}

// TestContractSharedStore runs the suite on one database for every
// subtest, as several tests sharing a server do.
func TestContractSharedStore(t *testing.T) {
	_, app := pgtest.FreshDB(t)
	db := pgtest.Open(t, app)
	storetest.Run(t, func(t *testing.T) edge.Store { return db })
}

// TestAuditContract runs the audit suite on one database as the
// application role, so the grants and row-level security are those of
// serve.
func TestAuditContract(t *testing.T) {
	_, app := pgtest.FreshDB(t)
	db := pgtest.Open(t, app)
	storetest.RunAudit(t, func(t *testing.T) storetest.AuditStore { return db })
}

func TestKeyringStoreContract(t *testing.T) {
	keyringtest.StoreContract(t, func(t *testing.T) keyring.Store {
		_, app := pgtest.FreshDB(t)
		db := pgtest.Open(t, app)
		for _, id := range []string{"org_a", "org_b", "org_c"} {
			if err := db.CreateOrg(t.Context(), edge.Org{ID: id, Name: id}); err != nil {
				t.Fatal(err)
			}
		}
		return db
	})
}

// tenant holds one row of an org in every tenant table.
func seedOrg(t *testing.T, db *postgres.DB, id string) {
	t.Helper()
	ctx := t.Context()
	if err := db.CreateOrg(ctx, edge.Org{ID: id, Name: "name-" + id}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.SwapFingerprintSecret(ctx, id, nil, []byte("sealed-secret-"+id)); err != nil {
		t.Fatal(err)
	}
	k := edge.APIKey{ID: "key_" + id, OrgID: id, Name: "k", Prefix: "pk_", Hash: sha256.Sum256([]byte(id))}
	if err := db.CreateKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	if err := db.SetProvider(ctx, edge.ProviderConfig{OrgID: id, Provider: edge.OpenAI, APIKeyEnv: "K_" + id}); err != nil {
		t.Fatal(err)
	}
	rec := edge.RequestRecord{ID: "req_" + id, Time: time.Now(), OrgID: id, KeyID: k.ID, Provider: edge.OpenAI, Status: 200}
	if err := db.InsertRequests(ctx, []edge.RequestRecord{rec}); err != nil {
		t.Fatal(err)
	}
	if err := db.SetLimit(ctx, edge.Limit{OrgID: id, KeyID: k.ID, RPM: 10}); err != nil {
		t.Fatal(err)
	}
	if err := db.SetBudget(ctx, edge.Budget{OrgID: id, Period: edge.Day, CapNanoUSD: 1e9}); err != nil {
		t.Fatal(err)
	}
	if err := db.AddSpend(ctx, []edge.Spend{{OrgID: id, Period: edge.Day, Start: edge.Day.Start(time.Now()), NanoUSD: 1}}); err != nil {
		t.Fatal(err)
	}
	d := keyring.WrappedDEK{ID: keyring.DEKID(uuid.New()), OrgID: id, Generation: 1, MasterRef: "local", MasterVersion: "1", Wrapped: []byte("wrapped")}
	if err := db.CreateDEK(ctx, d); err != nil {
		t.Fatal(err)
	}
	if err := db.PutMemory(ctx, edge.Memory{OrgID: id, Name: "style", Version: 1, Sealed: []byte("sealed-memory")}); err != nil {
		t.Fatal(err)
	}
	if err := db.SetAuditLevel(ctx, edge.AuditSetting{OrgID: id, Level: edge.AuditFull}); err != nil {
		t.Fatal(err)
	}
	if err := db.AppendAudit(ctx, []edge.AuditEvent{storetest.AuditSample(id, "req_"+id, time.Now(), edge.AuditFull)}); err != nil {
		t.Fatal(err)
	}
}

// tenantTables lists every table of the schema with an org_id column, and
// orgs (keyed on id), with the column that names the org.
func tenantTables(t *testing.T, conn *pgx.Conn) map[string]string {
	t.Helper()
	rows, err := conn.Query(t.Context(), `
		SELECT table_name FROM information_schema.columns
		WHERE table_schema = current_schema() AND column_name = 'org_id'
		  AND table_name IN (SELECT table_name FROM information_schema.tables
		                     WHERE table_schema = current_schema() AND table_type = 'BASE TABLE')`)
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{"orgs": "id"}
	for _, n := range names {
		out[n] = "org_id"
	}
	return out
}

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// TestEveryTenantTableHasForcedRLS fails when a table carrying org_id (or
// orgs) lacks ENABLE + FORCE row-level security or a policy on app.org_id.
func TestEveryTenantTableHasForcedRLS(t *testing.T) {
	owner, _ := pgtest.FreshDB(t)
	conn := connect(t, owner)
	tables := tenantTables(t, conn)
	for _, want := range []string{"orgs", "api_keys", "provider_configs", "requests", "data_keys", "changes", "memories"} {
		if _, ok := tables[want]; !ok {
			t.Errorf("tenant table %s not found by the org_id scan", want)
		}
	}
	for table, col := range tables {
		var enabled, forced bool
		err := conn.QueryRow(t.Context(),
			`SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = $1::regclass`, table).Scan(&enabled, &forced)
		if err != nil {
			t.Fatal(err)
		}
		if !enabled || !forced {
			t.Errorf("table %s: row-level security enabled=%v forced=%v, want both", table, enabled, forced)
		}
		var qual, check string
		err = conn.QueryRow(t.Context(),
			`SELECT COALESCE(qual, ''), COALESCE(with_check, '') FROM pg_policies
			 WHERE schemaname = current_schema() AND tablename = $1 AND policyname = 'tenant' AND cmd = 'ALL'`, table).Scan(&qual, &check)
		if err != nil {
			t.Errorf("table %s: no tenant policy: %v", table, err)
			continue
		}
		for _, expr := range []string{qual, check} {
			if !strings.Contains(expr, col) || !strings.Contains(expr, "current_setting('app.org_id'::text, true)") {
				t.Errorf("table %s: tenant policy %q does not key %s on app.org_id", table, expr, col)
			}
		}
	}
}

// TestRLSIsolatesOrgs uses raw SQL as the application role: a transaction
// for org A cannot read, update, delete or insert org B's rows in any
// tenant table, and a transaction with no org sees nothing.
func TestRLSIsolatesOrgs(t *testing.T) {
	owner, app := pgtest.FreshDB(t)
	db := pgtest.Open(t, app)
	seedOrg(t, db, "org_a")
	seedOrg(t, db, "org_b")

	conn := connect(t, app)
	ctx := t.Context()
	tables := tenantTables(t, connect(t, owner))
	if len(tables) < 6 {
		t.Fatalf("tenant tables %v", tables)
	}

	// inTx runs fn in a transaction as org (none when ""), rolled back.
	inTx := func(org string, fn func(tx pgx.Tx) error) error {
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if org != "" {
			if _, err := tx.Exec(ctx, `SELECT set_config('app.org_id', $1, true)`, org); err != nil {
				t.Fatal(err)
			}
		}
		return fn(tx)
	}
	// denied reports a refusal: no privilege at all, or a row-level
	// security violation (both SQLSTATE 42501).
	denied := func(err error) bool {
		var pe *pgconn.PgError
		return errors.As(err, &pe) && pe.Code == "42501"
	}
	count := func(org, table, where string) (int, error) {
		var n int
		err := inTx(org, func(tx pgx.Tx) error {
			return tx.QueryRow(ctx, fmt.Sprintf(`SELECT count(*) FROM %s %s`, table, where)).Scan(&n)
		})
		return n, err
	}

	for table, col := range tables {
		t.Run(table, func(t *testing.T) {
			// Each org sees its own rows (where it may read at all).
			ownA, err := count("org_a", table, "")
			if denied(err) {
				// The application role has no SELECT here (the change feed
				// is read through codex_changes): it reads nothing of anyone.
				ownA = -1
			} else if err != nil {
				t.Fatal(err)
			} else if ownA == 0 {
				t.Fatalf("org_a sees none of its own rows in %s", table)
			}
			if ownA >= 0 {
				if n, err := count("org_a", table, fmt.Sprintf("WHERE %s = 'org_b'", col)); err != nil || n != 0 {
					t.Errorf("org_a reads %d of org_b's rows (err %v)", n, err)
				}
				if n, err := count("", table, ""); err != nil || n != 0 {
					t.Errorf("no org set: reads %d rows (err %v)", n, err)
				}
			}
			// Updates and deletes of org_b's rows touch nothing or are refused.
			for _, stmt := range []string{
				fmt.Sprintf(`UPDATE %s SET %s = %s WHERE %s = 'org_b'`, table, col, col, col),
				fmt.Sprintf(`DELETE FROM %s WHERE %s = 'org_b'`, table, col),
			} {
				for _, org := range []string{"org_a", ""} {
					err := inTx(org, func(tx pgx.Tx) error {
						tag, err := tx.Exec(ctx, stmt)
						if err == nil && tag.RowsAffected() != 0 {
							return fmt.Errorf("%d rows affected", tag.RowsAffected())
						}
						return err
					})
					if err != nil && !denied(err) {
						t.Errorf("as %q: %s: %v", org, stmt, err)
					}
				}
			}
			// Moving one's own row to org_b, or inserting a row of org_b, is refused.
			err = inTx("org_a", func(tx pgx.Tx) error {
				_, err := tx.Exec(ctx, fmt.Sprintf(`UPDATE %s SET %s = 'org_b' WHERE %s = 'org_a'`, table, col, col))
				return err
			})
			if !denied(err) {
				t.Errorf("moving org_a's row to org_b: %v, want refused", err)
			}
			for _, org := range []string{"org_a", ""} {
				err = inTx(org, func(tx pgx.Tx) error {
					_, err := tx.Exec(ctx, fmt.Sprintf(
						`INSERT INTO %[1]s OVERRIDING SYSTEM VALUE SELECT * FROM %[1]s WHERE false UNION ALL SELECT (jsonb_populate_record(NULL::%[1]s, jsonb_build_object('%[2]s', 'org_b'))).*`, table, col))
					return err
				})
				if !denied(err) {
					t.Errorf("inserting a row of org_b as %q: %v, want refused", org, err)
				}
			}
		})
	}

	// Nothing of org_b was lost or changed: org_b still sees all of it.
	for _, check := range []func() (int, error){
		func() (int, error) { k, err := db.Keys(ctx, "org_b"); return len(k), err },
		func() (int, error) { p, err := db.Providers(ctx, "org_b"); return len(p), err },
		func() (int, error) { r, err := db.Requests(ctx, "org_b", time.Time{}, 10); return len(r), err },
		func() (int, error) { d, err := db.DEKs(ctx, "org_b"); return len(d), err },
		func() (int, error) { m, err := db.Memories(ctx, "org_b"); return len(m), err },
		func() (int, error) { l, err := db.Limits(ctx, "org_b"); return len(l), err },
		func() (int, error) { b, err := db.Budgets(ctx, "org_b"); return len(b), err },
		func() (int, error) {
			n, err := db.Spent(ctx, "org_b", "", edge.Day, time.Now())
			return int(n), err
		},
	} {
		if n, err := check(); err != nil || n != 1 {
			t.Errorf("org_b's rows after the attempts: %d, %v; want 1", n, err)
		}
	}
	if s, err := db.FingerprintSecret(ctx, "org_b"); err != nil || string(s) != "sealed-secret-org_b" {
		t.Errorf("org_b's fingerprint secret = %q, %v", s, err)
	}
}

// TestNoOrgSetSeesNothing checks the pool: after tenant transactions, a
// plain query on the same connection carries no org.
func TestNoOrgSetSeesNothing(t *testing.T) {
	_, app := pgtest.FreshDB(t)
	db, err := postgres.Open(t.Context(), app+"&pool_max_conns=1", postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	seedOrg(t, db, "org_a")
	if _, err := db.Keys(t.Context(), "org_a"); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"orgs", "api_keys", "provider_configs", "requests", "data_keys", "memories"} {
		var n int
		if err := db.Pool().QueryRow(t.Context(), `SELECT count(*) FROM `+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("%s: %d rows visible on a pooled connection with no org set", table, n)
		}
		var setting string
		if err := db.Pool().QueryRow(t.Context(), `SELECT COALESCE(current_setting('app.org_id', true), '')`).Scan(&setting); err != nil {
			t.Fatal(err)
		}
		if setting != "" {
			t.Errorf("app.org_id = %q outside a transaction", setting)
		}
	}
}

// TestServeRole: the application role owns nothing and is neither
// superuser nor BYPASSRLS; the owner role is refused.
func TestServeRole(t *testing.T) {
	owner, app := pgtest.FreshDB(t)
	conn := connect(t, app)
	var super, bypass, owns bool
	err := conn.QueryRow(t.Context(), `
		SELECT rolsuper, rolbypassrls,
		       EXISTS (SELECT 1 FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace
		               AND pg_has_role(current_user, c.relowner, 'MEMBER'))
		FROM pg_roles WHERE rolname = current_user`).Scan(&super, &bypass, &owns)
	if err != nil {
		t.Fatal(err)
	}
	if super || bypass || owns {
		t.Errorf("application role: superuser=%v bypassrls=%v owns tables=%v; want none", super, bypass, owns)
	}

	if err := pgtest.Open(t, app).CheckServeRole(t.Context(), pgtest.AppRole); err != nil {
		t.Errorf("CheckServeRole as the application role: %v", err)
	}
	if err := pgtest.Open(t, app).CheckServeRole(t.Context(), "someone_else"); err == nil {
		t.Error("CheckServeRole accepted a role other than CODEX_DATABASE_APP_ROLE")
	}
	err = pgtest.Open(t, owner).CheckServeRole(t.Context(), pgtest.AppRole)
	if err == nil || !strings.Contains(err.Error(), "owns tables") {
		t.Errorf("CheckServeRole as the owner = %v, want a refusal naming table ownership", err)
	}
}

// TestServeRoleRefusesSuperuserAndBypassRLS runs on a private cluster,
// where the test may create such roles.
func TestServeRoleRefusesSuperuserAndBypassRLS(t *testing.T) {
	c := pgtest.NewCluster(t)
	owner, _ := c.FreshDB(t)
	su := connect(t, c.SuperuserURL())
	for _, q := range []string{
		`CREATE ROLE codex_super LOGIN SUPERUSER PASSWORD 'pw'`,
		`CREATE ROLE codex_bypass LOGIN BYPASSRLS PASSWORD 'pw'`,
		// Neither attribute is inherited, but a member may SET ROLE.
		`CREATE ROLE codex_member LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD 'pw'`,
		`CREATE ROLE codex_escape NOLOGIN BYPASSRLS`,
		`GRANT codex_escape TO codex_member`,
	} {
		if _, err := su.Exec(t.Context(), q); err != nil {
			t.Fatal(err)
		}
	}
	for role, want := range map[string]string{"codex_super": "superuser", "codex_bypass": "BYPASSRLS", "codex_member": "SET ROLE"} {
		url := strings.Replace(owner, "codex_owner:owner_pw", role+":pw", 1)
		err := pgtest.Open(t, url).CheckServeRole(t.Context(), role)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckServeRole as %s = %v, want a refusal naming %s", role, err, want)
		}
	}
}

func TestMigrate(t *testing.T) {
	owner, app := pgtest.FreshDB(t)
	// Applying again is a no-op.
	if err := postgres.Migrate(t.Context(), owner, pgtest.AppRole); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	v, err := pgtest.Open(t, app).SchemaVersion(t.Context())
	if err != nil || v < 1 {
		t.Errorf("SchemaVersion = %d, %v", v, err)
	}
	// Granting the owner itself is refused: serve would then own its tables.
	o2, _ := pgtest.Server(t)
	c := connect(t, o2)
	name := fmt.Sprintf("edge_test_self_%d", time.Now().UnixNano())
	if _, err := c.Exec(t.Context(), "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("drop test database %s: %v", name, err)
		}
	})
	err = postgres.Migrate(t.Context(), pgtest.WithDB(o2, name), "codex_owner")
	if err == nil || !strings.Contains(err.Error(), "must not be the owner role") {
		t.Errorf("Migrate granting the owner = %v, want refused", err)
	}
}

// TestChangeFeedOrderUnderConcurrency: seqs become visible in order even
// when many transactions write the feed at once, so a poller never skips
// an entry committed after a higher one it has read.
func TestChangeFeedOrderUnderConcurrency(t *testing.T) {
	_, app := pgtest.FreshDB(t)
	db := pgtest.Open(t, app)
	ctx := t.Context()
	if err := db.CreateOrg(ctx, edge.Org{ID: "o", Name: "o"}); err != nil {
		t.Fatal(err)
	}
	const writers, each = 8, 25
	done := make(chan error, writers)
	for w := range writers {
		go func() {
			for i := range each {
				k := edge.APIKey{ID: fmt.Sprintf("k_%d_%d", w, i), OrgID: "o", Hash: sha256.Sum256([]byte(fmt.Sprint(w, i)))}
				if err := db.CreateKey(ctx, k); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	// Poll as the directory does, remembering the last seq seen.
	var seen []int64
	last := int64(0)
	finished := 0
	for finished < writers {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			finished++
		default:
		}
		page, err := db.Changes(ctx, last)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range page {
			seen = append(seen, c.Seq)
			last = c.Seq
		}
	}
	for {
		page, err := db.Changes(ctx, last)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, c := range page {
			seen = append(seen, c.Seq)
			last = c.Seq
		}
	}
	// One org entry plus one per key, none missed.
	if len(seen) != 1+writers*each {
		t.Errorf("poller saw %d entries, want %d", len(seen), 1+writers*each)
	}
	if !slices.IsSorted(seen) {
		t.Errorf("seqs out of order")
	}
}

// TestChangeNotify: a change committed through one store reaches another
// store's ChangeNotify (another instance) without polling.
func TestChangeNotify(t *testing.T) {
	_, app := pgtest.FreshDB(t)
	a, b := pgtest.Open(t, app), pgtest.Open(t, app)
	ch := b.ChangeNotify()
	// The listener signals once when it starts listening.
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("listener did not start")
	}
	start := time.Now()
	if err := a.CreateOrg(t.Context(), edge.Org{ID: "o", Name: "o"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
		t.Logf("notified %v after commit", time.Since(start))
	case <-time.After(time.Second):
		t.Fatal("no notification within 1s of a change")
	}
}

func TestCheckSchema(t *testing.T) {
	_, app := pgtest.FreshDB(t)
	if err := pgtest.Open(t, app).CheckSchema(t.Context()); err != nil {
		t.Errorf("CheckSchema on a migrated database: %v", err)
	}
	o, a := pgtest.Server(t)
	c := connect(t, o)
	name := fmt.Sprintf("edge_test_empty_%d", time.Now().UnixNano())
	if _, err := c.Exec(t.Context(), "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("drop test database %s: %v", name, err)
		}
	})
	err := pgtest.Open(t, pgtest.WithDB(a, name)).CheckSchema(t.Context())
	if err == nil || !strings.Contains(err.Error(), "codex-edge migrate") {
		t.Errorf("CheckSchema on an empty database = %v, want a hint to migrate", err)
	}
}

// TestDefinerFunctions: every SECURITY DEFINER function pins search_path,
// is not executable by PUBLIC, and is executable by the application role.
func TestDefinerFunctions(t *testing.T) {
	owner, _ := pgtest.FreshDB(t)
	conn := connect(t, owner)
	rows, err := conn.Query(t.Context(), `
		SELECT p.proname, COALESCE(array_to_string(p.proconfig, ','), ''),
		       EXISTS (SELECT 1 FROM aclexplode(p.proacl) a WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE'),
		       has_function_privilege($1, p.oid, 'EXECUTE')
		FROM pg_proc p WHERE p.pronamespace = current_schema()::regnamespace AND p.prosecdef
		ORDER BY p.proname`, pgtest.AppRole)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for rows.Next() {
		var (
			name, config       string
			public, appCanExec bool
		)
		if err := rows.Scan(&name, &config, &public, &appCanExec); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
		if !strings.HasPrefix(config, "search_path=pg_catalog, ") || !strings.HasSuffix(config, ", pg_temp") {
			t.Errorf("%s: config %q, want search_path pinned to pg_catalog, the schema, pg_temp", name, config)
		}
		if public {
			t.Errorf("%s: PUBLIC may execute it", name)
		}
		if !appCanExec {
			t.Errorf("%s: the application role may not execute it", name)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := []string{"codex_audit_event_org", "codex_changes", "codex_dek_orgs", "codex_delete_org", "codex_key_by_hash", "codex_key_by_id", "codex_org_master_keys", "codex_orgs", "codex_requests_drop_partitions", "codex_requests_partitions"}
	if !slices.Equal(names, want) {
		t.Errorf("SECURITY DEFINER functions %v, want exactly %v", names, want)
	}
}

// TestInsertRequestsReplayAfterUncertainCommit: when a batch's COMMIT went
// unanswered but did happen, the writer's retry of that same batch
// succeeds without storing it twice; any other batch with a taken id is
// still a conflict.
func TestInsertRequestsReplayAfterUncertainCommit(t *testing.T) {
	_, app := pgtest.FreshDB(t)
	db := pgtest.Open(t, app)
	ctx := t.Context()
	for _, o := range []string{"o1", "o2"} {
		if err := db.CreateOrg(ctx, edge.Org{ID: o, Name: o}); err != nil {
			t.Fatal(err)
		}
	}
	batch := []edge.RequestRecord{storetest.SampleRecord("o1", "k", "r1", time.Now()), storetest.SampleRecord("o2", "k", "r2", time.Now())}
	if err := db.InsertRequests(ctx, batch); err != nil {
		t.Fatal(err)
	}
	// Not marked: a replay is a conflict, as in every store.
	if err := db.InsertRequests(ctx, batch); !errors.Is(err, edge.ErrConflict) {
		t.Fatalf("replay of a committed batch = %v, want ErrConflict", err)
	}
	db.MarkUncertain(batch)
	// A different batch sharing the first id is still refused.
	other := []edge.RequestRecord{batch[0], storetest.SampleRecord("o1", "k", "r3", time.Now())}
	if err := db.InsertRequests(ctx, other); !errors.Is(err, edge.ErrConflict) {
		t.Fatalf("other batch with a taken id = %v, want ErrConflict", err)
	}
	if err := db.InsertRequests(ctx, batch); err != nil {
		t.Fatalf("retry of a batch whose commit went unanswered = %v, want nil", err)
	}
	for _, o := range []string{"o1", "o2"} {
		if recs, err := db.Requests(ctx, o, time.Time{}, 10); err != nil || len(recs) != 1 {
			t.Errorf("org %s: %d records, %v; want 1", o, len(recs), err)
		}
	}
	// Only once: a second replay is a conflict again.
	if err := db.InsertRequests(ctx, batch); !errors.Is(err, edge.ErrConflict) {
		t.Fatalf("second replay = %v, want ErrConflict", err)
	}
}

// TestAuditAppendOnly: the application role that serve connects as may
// clear an audit event's content (shred, retention) but may neither delete
// an event nor change what the chain covers, even within its own org.
func TestAuditAppendOnly(t *testing.T) {
	_, app := pgtest.FreshDB(t)
	db := pgtest.Open(t, app)
	seedOrg(t, db, "org_a")
	conn := connect(t, app)
	ctx := t.Context()
	for _, tc := range []struct {
		stmt    string
		allowed bool
	}{
		{`UPDATE audit_events SET content = NULL, content_removed = 'shred' WHERE org_id = 'org_a'`, true},
		{`UPDATE audit_events SET meta = '{}' WHERE org_id = 'org_a'`, false},
		{`UPDATE audit_events SET request_digest = NULL WHERE org_id = 'org_a'`, false},
		{`UPDATE audit_events SET hash = prev_hash WHERE org_id = 'org_a'`, false},
		{`UPDATE audit_events SET seq = seq + 1 WHERE org_id = 'org_a'`, false},
		{`DELETE FROM audit_events WHERE org_id = 'org_a'`, false},
		{`DELETE FROM audit_heads WHERE org_id = 'org_a'`, false},
		// Deleting the org whole takes codex_delete_org, which leaves
		// its record: the role can neither forge nor erase one.
		{`INSERT INTO org_deletions (deleted_org_id, at, actor, via, rows) VALUES ('org_x', now(), 'x', 'x', '{}')`, false},
		{`DELETE FROM org_deletions`, false},
	} {
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, `SELECT set_config('app.org_id', 'org_a', true)`); err != nil {
			t.Fatal(err)
		}
		tag, err := tx.Exec(ctx, tc.stmt)
		tx.Rollback(ctx)
		var pe *pgconn.PgError
		denied := errors.As(err, &pe) && pe.Code == "42501"
		switch {
		case tc.allowed && (err != nil || tag.RowsAffected() != 1):
			t.Errorf("%s: %v (%d rows), want allowed", tc.stmt, err, tag.RowsAffected())
		case !tc.allowed && !denied:
			t.Errorf("%s: %v, want permission denied", tc.stmt, err)
		}
	}
}
