package postgres_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/store/postgres"
	"github.com/persiv/codex/edge/store/postgres/pgtest"
	"github.com/persiv/codex/edge/store/storetest"
)

func partitionName(t time.Time) string {
	return fmt.Sprintf("requests_y%04dm%02d", t.UTC().Year(), int(t.UTC().Month()))
}

func monthStart(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}

// TestRequestPartitions: request metadata lives in monthly partitions;
// retention drops a month whole once all of it is past the cut-off (the
// partition table is gone), keeps what is within, and an insert never
// fails for want of a partition: one a month without its partition lands
// in the default partition and moves into the month's partition when that
// is created.
func TestRequestPartitions(t *testing.T) {
	owner, app := pgtest.FreshDB(t)
	db := pgtest.Open(t, app)
	conn := connect(t, owner)
	ctx := t.Context()
	for _, o := range []string{"o1", "o2"} {
		if err := db.CreateOrg(ctx, edge.Org{ID: o, Name: o}); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now().UTC()
	exists := func(name string) bool {
		t.Helper()
		var ok bool
		if err := conn.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, name).Scan(&ok); err != nil {
			t.Fatal(err)
		}
		return ok
	}
	rowsIn := func(table string) int {
		t.Helper()
		var n int
		// The owner sees a partition's rows only without FORCE.
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, fmt.Sprintf(`ALTER TABLE %s NO FORCE ROW LEVEL SECURITY`, table)); err != nil {
			t.Fatal(err)
		}
		if err := tx.QueryRow(ctx, fmt.Sprintf(`SELECT count(*) FROM %s`, table)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	// The migration made the current month's partition and the next two.
	for i := range 3 {
		if name := partitionName(monthStart(now).AddDate(0, i, 0)); !exists(name) {
			t.Errorf("partition %s missing after migration", name)
		}
	}

	old := monthStart(now).AddDate(0, -4, 0).Add(36 * time.Hour) // four months ago: past retention
	within := monthStart(now)                                    // within retention, in a month with a partition
	recs := []edge.RequestRecord{
		storetest.SampleRecord("o1", "k", "r_old1", old),
		storetest.SampleRecord("o2", "k", "r_old2", old),
		storetest.SampleRecord("o1", "k", "r_new1", within),
		storetest.SampleRecord("o2", "k", "r_new2", now),
	}
	if err := db.InsertRequests(ctx, recs); err != nil {
		t.Fatalf("insert with the old month lacking a partition: %v", err)
	}
	if n := rowsIn("requests_default"); n != 2 {
		t.Fatalf("default partition holds %d rows, want the 2 of the month without a partition", n)
	}
	created, err := db.EnsureRequestPartitions(ctx, old, 0)
	if err != nil || !slices.Equal(created, []string{partitionName(old)}) {
		t.Fatalf("EnsureRequestPartitions(old month) = %v, %v", created, err)
	}
	if a, b := rowsIn("requests_default"), rowsIn(partitionName(old)); a != 0 || b != 2 {
		t.Fatalf("after creating the old month's partition: default %d rows, partition %d; want 0 and 2", a, b)
	}

	// Retention of 30 days: the old month is entirely past it and goes
	// whole; the current month (and the previous, holding the cut-off)
	// stay.
	before := now.Add(-30 * 24 * time.Hour)
	dropped, err := db.DropRequestPartitions(ctx, before)
	if err != nil || !slices.Equal(dropped, []string{partitionName(old)}) {
		t.Fatalf("DropRequestPartitions = %v, %v; want only %s", dropped, err, partitionName(old))
	}
	if exists(partitionName(old)) {
		t.Errorf("partition %s still exists after being dropped", partitionName(old))
	}
	for _, o := range []string{"o1", "o2"} {
		got, err := db.Requests(ctx, o, time.Time{}, 10)
		if err != nil || len(got) != 1 || got[0].ID == "r_old1" || got[0].ID == "r_old2" {
			t.Errorf("org %s after the drop: %v, %v; want only its record within retention", o, got, err)
		}
	}
	if !exists(partitionName(now)) {
		t.Errorf("the current month's partition was dropped")
	}

	// A new month: its partition is made ahead, and inserts land in it.
	next := monthStart(now).AddDate(0, 3, 0).Add(time.Hour)
	if _, err := db.EnsureRequestPartitions(ctx, now, 3); err != nil {
		t.Fatal(err)
	}
	if err := db.InsertRequests(ctx, []edge.RequestRecord{storetest.SampleRecord("o1", "k", "r_next", next)}); err != nil {
		t.Fatalf("insert in a new month: %v", err)
	}
	if n := rowsIn(partitionName(next)); n != 1 {
		t.Errorf("partition %s holds %d rows, want 1", partitionName(next), n)
	}
	// Far ahead, with no partition: the default partition takes it.
	far := monthStart(now).AddDate(1, 0, 0)
	if err := db.InsertRequests(ctx, []edge.RequestRecord{storetest.SampleRecord("o1", "k", "r_far", far)}); err != nil {
		t.Fatalf("insert in a month without a partition: %v", err)
	}
	// The application role has no privilege on any partition: it reaches
	// rows only through requests and its row-level security.
	var direct int
	err = conn.QueryRow(ctx, `
		SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'requests'::regclass
		  AND has_table_privilege($1, c.oid, 'SELECT,INSERT,UPDATE,DELETE')`, pgtest.AppRole).Scan(&direct)
	if err != nil || direct != 0 {
		t.Errorf("the application role may use %d partitions directly (%v), want none", direct, err)
	}
}

// TestRequestPartitionsMigration: the migration that partitions requests
// keeps every existing row, each in its month's partition.
func TestRequestPartitionsMigration(t *testing.T) {
	owner, app := pgtest.EmptyDB(t)
	ctx := t.Context()
	if err := postgres.MigrateTo(ctx, owner, pgtest.AppRole, 8); err != nil {
		t.Fatal(err)
	}
	db := pgtest.Open(t, app)
	if err := db.CreateOrg(ctx, edge.Org{ID: "o1", Name: "o1"}); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	mid := time.Date(now.Year(), now.Month(), 15, 12, 0, 0, 0, time.UTC) // months back stay in their month
	var recs []edge.RequestRecord
	for i := range 6 {
		recs = append(recs, storetest.SampleRecord("o1", "k", fmt.Sprintf("r%d", i), mid.AddDate(0, -i, 0)))
	}
	if err := db.InsertRequests(ctx, recs); err != nil {
		t.Fatal(err)
	}
	if err := postgres.Migrate(ctx, owner, pgtest.AppRole); err != nil {
		t.Fatal(err)
	}
	got, err := db.Requests(ctx, "o1", time.Time{}, 100)
	if err != nil || len(got) != len(recs) {
		t.Fatalf("after the migration: %d records, %v; want %d", len(got), err, len(recs))
	}
	conn := connect(t, owner)
	// The owner is under forced row-level security too: read as the org.
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT set_config('app.org_id', 'o1', true)`); err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		var part string
		err := tx.QueryRow(ctx, `SELECT tableoid::regclass::text FROM requests WHERE id = $1`, r.ID).Scan(&part)
		if err != nil || part != partitionName(r.Time) {
			t.Errorf("record %s of %s is in %q (%v), want %s", r.ID, r.Time.Format("2006-01"), part, err, partitionName(r.Time))
		}
	}
}
