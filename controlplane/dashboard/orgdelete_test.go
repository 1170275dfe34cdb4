package dashboard

import (
	"context"
	"crypto/sha256"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/persiv/codex/controlplane"
	"github.com/persiv/codex/controlplane/ingest"
	"github.com/persiv/codex/controlplane/store/storetest"
	"github.com/persiv/codex/controlplane/testenv"
	"github.com/persiv/codex/shared/wire"
)

// orgRows counts, as the owner role, the rows naming orgID in every table
// with an org_id column (found in the catalog, so a table added later is
// covered), and its row in orgs. Forced row-level security applies to the
// owner too, so the count runs as the org.
func orgRows(t *testing.T, ownerURL, orgID string) map[string]int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, ownerURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `
		SELECT c.table_name FROM information_schema.columns c
		JOIN information_schema.tables t USING (table_schema, table_name)
		WHERE c.table_schema = 'public' AND c.column_name = 'org_id' AND t.table_type = 'BASE TABLE'
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
	defer tx.Rollback(ctx)
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

// TestOwnerDeletesOrg: on Postgres, with the embedded NATS server, an
// owner deletes their org by typing its name: no row naming it is left in
// any table, its edge can no longer connect or publish, its usage stream
// is gone, the deletion is recorded, and another org is untouched. An
// admin gets 403, a wrong name or a missing CSRF token changes nothing.
func TestOwnerDeletesOrg(t *testing.T) {
	f := newFixtureWith(t, testenv.Options{Postgres: true})
	env := f.env
	ctx := context.Background()
	orgs := map[string]string{}
	edges := map[string]testenv.Edge{}
	owners := map[string]controlplane.User{}
	staff := []staffMember{f.staff(t, "s1@persiv.test"), f.staff(t, "s2@persiv.test")}
	for _, name := range []string{"Acme", "Beta"} {
		o := controlplane.Org{ID: controlplane.NewID("org"), Name: name, CreatedAt: f.clock.now()}
		if err := env.Store.CreateOrg(ctx, o); err != nil {
			t.Fatal(err)
		}
		orgs[name] = o.ID
		owners[name] = f.user(t, o.ID, "owner@"+name+".test", controlplane.RoleOwner)
		f.user(t, o.ID, "viewer@"+name+".test", controlplane.RoleViewer)
		if _, err := env.Enroll.CreateToken(ctx, o.ID, time.Hour); err != nil {
			t.Fatal(err)
		}
		if err := env.Store.CreateInvite(ctx, controlplane.Invite{Hash: sha256.Sum256([]byte("invite-" + name)), OrgID: o.ID, Email: "new@" + name + ".test",
			Role: controlplane.RoleViewer, CreatedBy: owners[name].ID, CreatedAt: f.clock.now(), ExpiresAt: f.clock.now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		edges[name] = env.EnrollEdge(t, o.ID)
		// A staff request, approved once: the org's access log, requests
		// and approvals have rows.
		c := f.session(t, owners[name])
		wantStatus(t, "break-glass", c.post("/access-log/break-glass", url.Values{"csrf": {c.csrf("/access-log")}, "break_glass": {"on"}}), http.StatusSeeOther)
		req := controlplane.AccessRequest{ID: controlplane.NewID("acr"), OrgID: o.ID, StaffID: staff[0].ID, Reason: "ticket 1", State: controlplane.AccessPending, RequestedAt: f.clock.now()}
		if err := env.Store.RequestAccess(ctx, req); err != nil {
			t.Fatal(err)
		}
		if _, err := env.Store.ApproveAccess(ctx, req.ID, staff[1].ID, f.clock.now()); err != nil {
			t.Fatal(err)
		}
	}
	publish := func(ed testenv.Edge, seq int64) error {
		nc, err := ed.Connect()
		if err != nil {
			return err
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return err
		}
		b := storetest.Batch(ed.OrgID, ed.EdgeID, seq, time.Now().UTC().Truncate(time.Minute).Add(-time.Duration(10-seq)*time.Minute), 3)
		b.Budgets = []wire.BudgetUse{{Workspace: "ws1", KeyRef: "k0", Period: "day", CapNanoUSD: 5e9, SpentNanoUSD: seq}}
		b.Memories = []wire.MemoryUse{{Workspace: "ws1", KeyRef: "none", Name: "style", Version: 1, Requests: 1, Tokens: 10, Estimated: 1}}
		b.Audit = []wire.AuditCount{{Workspace: "ws1", Level: "hash", Records: 1}}
		data, err := wire.Encode(b)
		if err != nil {
			return err
		}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err = js.Publish(pctx, ed.Subject, data, jetstream.WithMsgID(wire.MsgID(ed.EdgeID, seq)))
		return err
	}
	for _, name := range []string{"Acme", "Beta"} {
		if err := publish(edges[name], 1); err != nil {
			t.Fatalf("%s publishes: %v", name, err)
		}
	}
	testenv.Eventually(t, 20*time.Second, "both orgs' batches stored", func() bool {
		a, b := orgRows(t, env.PostgresOwner, orgs["Acme"]), orgRows(t, env.PostgresOwner, orgs["Beta"])
		return a["usage_batches"] == 1 && b["usage_batches"] == 1
	})
	before := orgRows(t, env.PostgresOwner, orgs["Acme"])
	for table, n := range before {
		if n == 0 {
			t.Errorf("before the deletion, Acme has no row in %s: the test would prove nothing there", table)
		}
	}
	beta := orgRows(t, env.PostgresOwner, orgs["Beta"])
	// Acme's edge is connected when its org is deleted.
	closed := make(chan struct{})
	live, err := edges["Acme"].Connect(nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()

	owner := f.session(t, owners["Acme"])
	tok := owner.csrf("/account")
	// Not an owner: forbidden.
	admin := f.session(t, f.user(t, orgs["Acme"], "admin@acme.test", controlplane.RoleAdmin))
	wantStatus(t, "admin deletes", admin.post("/account/delete-org", url.Values{"csrf": {admin.csrf("/account")}, "confirm": {"Acme"}}), http.StatusForbidden)
	// A wrong name, or no CSRF token: nothing happens.
	wantStatus(t, "wrong name", owner.post("/account/delete-org", url.Values{"csrf": {tok}, "confirm": {"acme"}}), http.StatusBadRequest)
	wantStatus(t, "no csrf", owner.post("/account/delete-org", url.Values{"confirm": {"Acme"}}), http.StatusForbidden)
	after := orgRows(t, env.PostgresOwner, orgs["Acme"])
	after["users"]-- // the admin added above
	for table, n := range before {
		if after[table] != n {
			t.Fatalf("a refused deletion changed %s: %d rows, was %d", table, after[table], n)
		}
	}

	r := owner.post("/account/delete-org", url.Values{"csrf": {tok}, "confirm": {"Acme"}})
	wantStatus(t, "owner deletes", r, http.StatusSeeOther)
	if loc := r.Header.Get("Location"); loc != "/login?done=org-deleted" {
		t.Fatalf("after deleting: redirected to %q", loc)
	}
	for table, n := range orgRows(t, env.PostgresOwner, orgs["Acme"]) {
		if n != 0 {
			t.Errorf("after the deletion, %d rows of Acme remain in %s", n, table)
		}
	}
	for table, n := range orgRows(t, env.PostgresOwner, orgs["Beta"]) {
		if beta[table] != n {
			t.Errorf("Beta's rows in %s: %d before, %d after Acme's deletion", table, beta[table], n)
		}
	}
	// Acme's edge is cut off: its connection closed, a new one refused.
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the deleted org's edge connection stayed open")
	}
	if err := publish(edges["Acme"], 2); err == nil {
		t.Fatal("the deleted org's edge published")
	}
	js, err := jetstream.New(env.Service)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Stream(ctx, ingest.StreamName(orgs["Acme"])); err == nil {
		t.Errorf("stream %s still exists", ingest.StreamName(orgs["Acme"]))
	}
	if slices.Contains(env.Auth.Orgs(), orgs["Acme"]) {
		t.Errorf("the deleted org keeps its signing key")
	}
	// Beta carries on.
	if err := publish(edges["Beta"], 2); err != nil {
		t.Fatalf("Beta after Acme's deletion: %v", err)
	}
	testenv.Eventually(t, 20*time.Second, "Beta's next batch stored", func() bool {
		return orgRows(t, env.PostgresOwner, orgs["Beta"])["usage_batches"] == 2
	})
	dels, err := env.Store.OrgDeletions(ctx)
	if err != nil || len(dels) != 1 || dels[0].OrgID != orgs["Acme"] || dels[0].UserID != owners["Acme"].ID || dels[0].Rows["usage_batches"] != 1 {
		t.Fatalf("org deletions: %+v, %v", dels, err)
	}
	// The owner's session ended with the org.
	wantLoginRedirect(t, "overview after the deletion", owner.get("/overview"))
}
