package sqlite

import (
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/pressly/goose/v3"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/schemas"
)

// TestMemoriesMigrationKeepsChangeSeq: the migration that lets the change
// feed record memories copies the feed into a new table; a seq handed out
// before must never be handed out again, even when its row is gone, or a
// poller that saw it would miss the change that reuses it.
func TestMemoriesMigrationKeepsChangeSeq(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	raw, err := sql.Open("sqlite", dsn(filepath.Join(dir, FileName), false))
	if err != nil {
		t.Fatal(err)
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, raw, schemas.EdgeSQLite(), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(ctx, 3); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"a", "b", "c"} {
		if _, err := raw.ExecContext(ctx, `INSERT INTO changes (org_id, kind, ref, at) VALUES ('o', 'org', ?, 0)`, ref); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := raw.ExecContext(ctx, `DELETE FROM changes WHERE seq = 3`); err != nil {
		t.Fatal(err)
	}
	raw.Close()

	db := mustOpen(t, dir)
	if err := db.CreateOrg(ctx, edge.Org{ID: "o1", Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	if err := db.PutMemory(ctx, edge.Memory{OrgID: "o1", Name: "style", Version: 1, Sealed: []byte("sealed")}); err != nil {
		t.Fatal(err)
	}
	got, err := db.Changes(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	var seqs []int64
	for _, c := range got {
		seqs = append(seqs, c.Seq)
	}
	if len(got) != 4 || got[0].Seq != 1 || got[1].Seq != 2 || got[2].Seq <= 3 || got[3].Kind != "memory" {
		t.Fatalf("changes after the migration: %+v (seqs %v), want 1, 2 kept and new ones after 3", got, seqs)
	}
	if _, err := db.write.ExecContext(ctx, `INSERT INTO changes (org_id, kind, ref, at) VALUES ('o', 'bogus', 'x', 0)`); err == nil {
		t.Fatal("the new feed table accepts any kind")
	}
}
