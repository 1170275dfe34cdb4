package postgres_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/persiv/codex/controlplane"
	"github.com/persiv/codex/controlplane/store/postgres"
	"github.com/persiv/codex/controlplane/store/storetest"
)

// TestAccessLogAppendOnly: with raw SQL, the application role can neither
// update, delete nor truncate access-log rows (it lacks the privileges,
// whatever its org and staff settings), and the owner, even with
// row-level security switched off (it owns the table), is refused by the
// trigger; the rows and their chain stay as written.
func TestAccessLogAppendOnly(t *testing.T) {
	owner, app := freshDB(t)
	ctx := context.Background()
	s, err := postgres.Open(ctx, app)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	org := storetest.MustOrg(t, s)
	st := storetest.MustStaff(t, s, "ops@persiv.example")
	for _, kind := range []controlplane.AccessKind{controlplane.EventRequest, controlplane.EventUse} {
		if err := s.AppendAccessEvent(ctx, controlplane.AccessEvent{OrgID: org, At: time.Now(), Kind: kind, StaffID: st.ID, StaffEmail: st.Email}); err != nil {
			t.Fatal(err)
		}
	}
	before, err := s.AccessLog(ctx, org)
	if err != nil || len(before) != 2 {
		t.Fatalf("access log = %+v, %v", before, err)
	}
	for _, who := range []struct {
		name, url, setup, wantErr string
	}{
		{"app role", app, `SELECT 1`, "permission denied"},
		{"owner", owner, `ALTER TABLE access_log DISABLE ROW LEVEL SECURITY`, "append-only"},
	} {
		conn, err := pgx.Connect(ctx, who.url)
		if err != nil {
			t.Fatal(err)
		}
		for _, stmt := range []string{
			`UPDATE access_log SET detail = 'nothing to see' WHERE org_id = $1`,
			`DELETE FROM access_log WHERE org_id = $1 AND seq = 2`,
			`DELETE FROM access_log WHERE org_id = $1`,
			`TRUNCATE access_log`,
		} {
			tx, err := conn.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, `SELECT set_config('app.org_id', $1, true), set_config('app.staff_id', 'stf_x', true)`, org); err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, who.setup); err != nil {
				t.Fatal(err)
			}
			var args []any
			if strings.Contains(stmt, "$1") {
				args = append(args, org)
			}
			_, err = tx.Exec(ctx, stmt, args...)
			if err == nil {
				err = tx.Commit(ctx)
			}
			tx.Rollback(ctx)
			if err == nil || !strings.Contains(err.Error(), who.wantErr) {
				t.Errorf("%s: %s: %v, want an error with %q", who.name, stmt, err, who.wantErr)
			}
		}
		conn.Close(ctx)
	}
	after, err := s.AccessLog(ctx, org)
	if err != nil || len(after) != 2 || after[1].Hash != before[1].Hash || after[1].Detail != before[1].Detail {
		t.Fatalf("access log after the attempts = %+v, %v", after, err)
	}
	if err := controlplane.VerifyChain(after); err != nil {
		t.Fatal(err)
	}
}
