package sqlite_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/persiv/codex/controlplane"
	"github.com/persiv/codex/controlplane/store/sqlite"
	"github.com/persiv/codex/controlplane/store/storetest"
)

// TestAccessLogAppendOnly: with raw SQL on the database file, access-log
// rows can be neither updated nor deleted (triggers refuse both); the
// rows and their chain stay as written.
func TestAccessLogAppendOnly(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cp.db")
	s, err := sqlite.Open(ctx, path)
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
	raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	for _, stmt := range []string{
		`UPDATE access_log SET detail = 'nothing to see' WHERE org_id = ?`,
		`UPDATE access_log SET hash = prev_hash WHERE org_id = ?`,
		`DELETE FROM access_log WHERE org_id = ? AND seq = 2`,
		`DELETE FROM access_log WHERE org_id = ?`,
	} {
		if _, err := raw.ExecContext(ctx, stmt, org); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: %v, want the append-only refusal", stmt, err)
		}
	}
	after, err := s.AccessLog(ctx, org)
	if err != nil || len(after) != 2 || after[1].Hash != before[1].Hash || after[1].Detail != before[1].Detail {
		t.Fatalf("access log after the attempts = %+v, %v", after, err)
	}
	if err := controlplane.VerifyChain(after); err != nil {
		t.Fatal(err)
	}
}
