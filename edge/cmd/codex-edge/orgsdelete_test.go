package main

import (
	"context"
	"database/sql"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/persiv/codex/edge/fakeprovider"
	"github.com/persiv/codex/edge/internal/testutil"
	"github.com/persiv/codex/edge/store/postgres/pgtest"
	"github.com/persiv/codex/edge/store/sqlite"
)

// orgRows counts, as the owner role, the rows naming orgID in every table
// of the schema with an org_id column (found in the catalog, so a table
// added later is covered), and the org's row in orgs. The tenant policies
// are forced on the owner too, so the count runs as the org.
func orgRows(t *testing.T, ownerURL, orgID string) map[string]int {
	t.Helper()
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, ownerURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, `
		SELECT c.table_name FROM information_schema.columns c
		JOIN information_schema.tables t USING (table_schema, table_name)
		WHERE c.table_schema = current_schema() AND c.column_name = 'org_id' AND t.table_type = 'BASE TABLE'
		ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if len(tables) < 10 {
		t.Fatalf("catalog scan found only %v", tables)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, `SELECT set_config('app.org_id', $1, true)`, orgID); err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	count := func(table, col string) {
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{table}.Sanitize()+` WHERE `+col+` = $1`, orgID).Scan(&n); err != nil {
			t.Fatalf("count %s: %v", table, err)
		}
		out[table] = n
	}
	for _, tb := range tables {
		count(tb, "org_id")
	}
	count("orgs", "id")
	return out
}

// TestPostgresOrgsDelete: orgs delete refuses without --yes and says what
// it would delete; with it, it shreds the org and removes every row naming
// it from every table, records the deletion at the deployment's level, the
// org's keys get 401 from a running serve, and another org is untouched.
func TestPostgresOrgsDelete(t *testing.T) {
	owner, app := pgtest.FreshDB(t)
	fake := httptest.NewServer(fakeprovider.New(fakeprovider.Options{}))
	t.Cleanup(fake.Close)
	c := newCLI(t)
	c.env["CODEX_DATABASE_URL"] = app
	c.env["CODEX_CHANGE_POLL"] = "50ms"
	c.env["CODEX_METADATA_FLUSH"] = "10ms"
	c.env["FAKE_OPENAI_KEY"] = "sk-fake"
	ids := map[string]string{}
	keys := map[string]string{}
	for _, name := range []string{"acme", "beta"} {
		ids[name] = strings.TrimSpace(c.ok("orgs", "create", name))
		keys[name] = strings.TrimSpace(c.ok("keys", "create", "--org", name, "--name", "app"))
		c.ok("providers", "set", "--org", name, "openai", "--api-key-env", "FAKE_OPENAI_KEY", "--base-url", fake.URL)
		c.ok("limits", "set", "--org", name, "--rpm", "1000")
		c.ok("budgets", "set", "--org", name, "--usd", "100", "--period", "month")
		c.ok("audit", "level", "--org", name, "full")
		if code, _, errs := c.run("Answer briefly.", "memory", "set", "--org", name, "--name", "style", "--stdin"); code != 0 {
			t.Fatal(errs)
		}
	}
	base, _ := c.serveBG(t)
	chat := func(key string) error {
		oc := openai.NewClient(option.WithBaseURL(base+"/v1/"), option.WithAPIKey(key), option.WithMaxRetries(0))
		_, err := oc.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{Model: "gpt-4o-mini",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}})
		return err
	}
	for _, name := range []string{"acme", "beta"} {
		if err := chat(keys[name]); err != nil {
			t.Fatalf("%s before the deletion: %v", name, err)
		}
	}
	testutil.Eventually(t, 20*time.Second, "both orgs' request metadata and audit events stored", func() bool {
		a, b := orgRows(t, owner, ids["acme"]), orgRows(t, owner, ids["beta"])
		return a["requests"] == 1 && b["requests"] == 1 && a["audit_events"] > 0 && b["audit_events"] > 0 && a["spend"] > 0
	})
	before := orgRows(t, owner, ids["acme"])
	for _, table := range []string{"orgs", "api_keys", "provider_configs", "limits", "budgets", "memories", "audit_events", "audit_settings", "requests", "data_keys"} {
		if before[table] == 0 {
			t.Errorf("before the deletion, acme has no row in %s: the test would prove nothing there", table)
		}
	}
	beta := orgRows(t, owner, ids["beta"])

	// Without --yes: refused, with what it would delete, and nothing goes.
	code, _, errs := c.run("", "orgs", "delete", "--org", "acme")
	if code != 2 || !strings.Contains(errs, "would destroy org acme") || !strings.Contains(errs, "1 gateway keys") || !strings.Contains(errs, "--yes") {
		t.Fatalf("orgs delete without --yes: exit %d %q", code, errs)
	}
	if got := orgRows(t, owner, ids["acme"]); got["orgs"] != 1 || got["api_keys"] != before["api_keys"] {
		t.Fatalf("a refused delete changed rows: %v", got)
	}

	out := c.ok("orgs", "delete", "--org", "acme", "--yes")
	if !strings.Contains(out, "org acme ("+ids["acme"]+") deleted") {
		t.Fatalf("orgs delete: %q", out)
	}
	for table, n := range orgRows(t, owner, ids["acme"]) {
		// The change feed keeps one entry: running edges must learn that
		// the org's data keys are gone (ids only, no content).
		if want := map[string]int{"changes": 1}[table]; n != want {
			t.Errorf("after the deletion, %d rows of acme remain in %s, want %d", n, table, want)
		}
	}
	after := orgRows(t, owner, ids["beta"])
	for table, n := range beta {
		// beta's requests keep coming in only from beta's own traffic.
		if after[table] != n {
			t.Errorf("beta's rows in %s: %d before, %d after acme's deletion", table, n, after[table])
		}
	}
	if list := c.ok("orgs", "list"); strings.Contains(list, "acme") || !strings.Contains(list, "beta") {
		t.Errorf("orgs list after the deletion: %q", list)
	}
	// The running serve drops the deleted org's key.
	testutil.Eventually(t, 10*time.Second, "the deleted org's key to get 401", func() bool {
		var apiErr *openai.Error
		err := chat(keys["acme"])
		return errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusUnauthorized
	})
	if err := chat(keys["beta"]); err != nil {
		t.Fatalf("beta after acme's deletion: %v", err)
	}
	// The deletion is recorded at the deployment's level.
	db := pgtest.Open(t, app)
	dels, err := db.OrgDeletions(t.Context())
	if err != nil || len(dels) != 1 || dels[0].OrgID != ids["acme"] || dels[0].Via != "cli" || dels[0].Rows["requests"] != 1 || dels[0].Rows["orgs"] != 1 {
		t.Fatalf("org deletions: %+v, %v", dels, err)
	}
	// Again: the org is gone.
	if code, _, errs := c.run("", "orgs", "delete", "--org", "acme", "--yes"); code != 1 || !strings.Contains(errs, "no org") {
		t.Fatalf("deleting a deleted org: exit %d %q", code, errs)
	}
}

// TestOrgsDeleteSQLite: on SQLite too, orgs delete leaves no row naming
// the org in any table with an org_id column (found in the catalog), and
// the other org keeps all of its rows.
func TestOrgsDeleteSQLite(t *testing.T) {
	c := newCLI(t)
	ids := map[string]string{}
	for _, name := range []string{"acme", "beta"} {
		ids[name] = strings.TrimSpace(c.ok("orgs", "create", name))
		c.ok("keys", "create", "--org", name, "--name", "app")
		c.ok("limits", "set", "--org", name, "--rpm", "1000")
		c.ok("budgets", "set", "--org", name, "--usd", "100", "--period", "day")
		c.ok("audit", "level", "--org", name, "hash")
		if code, _, errs := c.run("Answer briefly.", "memory", "set", "--org", name, "--name", "style", "--stdin"); code != 0 {
			t.Fatal(errs)
		}
	}
	counts := func(orgID string) map[string]int {
		t.Helper()
		db, err := sql.Open("sqlite", filepath.Join(c.env["CODEX_DATA_DIR"], sqlite.FileName))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		tables := sqliteOrgTables(t, db)
		out := map[string]int{}
		for _, tb := range append(tables, "orgs") {
			col := "org_id"
			if tb == "orgs" {
				col = "id"
			}
			var n int
			if err := db.QueryRow(`SELECT count(*) FROM "`+tb+`" WHERE `+col+` = ?`, orgID).Scan(&n); err != nil {
				t.Fatal(err)
			}
			out[tb] = n
		}
		return out
	}
	before, beta := counts(ids["acme"]), counts(ids["beta"])
	for _, table := range []string{"orgs", "api_keys", "limits", "budgets", "memories", "audit_events", "audit_settings", "data_keys"} {
		if before[table] == 0 {
			t.Errorf("before the deletion, acme has no row in %s", table)
		}
	}
	if code, _, errs := c.run("", "orgs", "delete", "--org", "acme"); code != 2 || !strings.Contains(errs, "would destroy") {
		t.Fatalf("without --yes: exit %d %q", code, errs)
	}
	c.ok("orgs", "delete", "--org", "acme", "--yes")
	for table, n := range counts(ids["acme"]) {
		if want := map[string]int{"changes": 1}[table]; n != want { // the feed's notice that its data keys are gone
			t.Errorf("after the deletion, %d rows of acme remain in %s, want %d", n, table, want)
		}
	}
	after := counts(ids["beta"])
	for table, n := range beta {
		if after[table] != n {
			t.Errorf("beta's rows in %s: %d before, %d after", table, n, after[table])
		}
	}
	dels := jsonLines(t, c.ok("orgs", "deletions", "--json"))
	if len(dels) != 1 || dels[0]["org_id"] != ids["acme"] || dels[0]["via"] != "cli" {
		t.Errorf("orgs deletions: %v", dels)
	}
	if out := c.ok("orgs", "deletions"); !strings.Contains(out, ids["acme"]) || strings.Contains(out, "acme\t") {
		t.Errorf("orgs deletions: %q", out)
	}
}

// sqliteOrgTables lists the tables with an org_id column.
func sqliteOrgTables(t *testing.T, db *sql.DB) []string {
	t.Helper()
	rows, err := db.Query(`SELECT m.name FROM sqlite_master m, pragma_table_info(m.name) p WHERE m.type = 'table' AND p.name = 'org_id'`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var tables []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, n)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return tables
}
