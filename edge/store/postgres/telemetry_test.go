package postgres_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/persiv/codex/edge/internal/testutil"
	"github.com/persiv/codex/edge/keyring"
	"github.com/persiv/codex/edge/keyring/local"
	"github.com/persiv/codex/edge/store/postgres"
	"github.com/persiv/codex/edge/store/postgres/pgtest"
	"github.com/persiv/codex/edge/telemetry"
)

// replicas opens n handles on one database, as n edge replicas would.
func replicas(t *testing.T, n int, opts postgres.TelemetryOptions) []*postgres.Telemetry {
	t.Helper()
	_, app := pgtest.FreshDB(t)
	var out []*postgres.Telemetry
	for range n {
		out = append(out, pgtest.Open(t, app).TelemetryState(opts))
	}
	return out
}

// TestTelemetrySequenceNeverCollides: replicas taking sequence numbers at
// once each get their own, and together every number once.
func TestTelemetrySequenceNeverCollides(t *testing.T) {
	rs := replicas(t, 3, postgres.TelemetryOptions{})
	const each = 200
	var (
		mu   sync.Mutex
		seen = map[int64]int{}
		wg   sync.WaitGroup
	)
	for _, r := range rs {
		for range 2 {
			wg.Go(func() {
				for range each {
					seq, err := r.NextSeq(context.Background())
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					seen[seq]++
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	n := int64(len(rs) * 2 * each)
	for seq := int64(1); seq <= n; seq++ {
		if seen[seq] != 1 {
			t.Fatalf("seq %d given %d times", seq, seen[seq])
		}
	}
	if len(seen) != int(n) {
		t.Fatalf("%d numbers, want %d", len(seen), n)
	}
}

// TestTelemetrySpoolLease: a batch claimed by one replica is not claimed
// by another until its lease expires; then the other takes it, marked
// retaken, and acknowledging it removes it for everyone.
func TestTelemetrySpoolLease(t *testing.T) {
	const lease = time.Second
	rs := replicas(t, 2, postgres.TelemetryOptions{Lease: lease})
	a, b := rs[0], rs[1]
	ctx := context.Background()
	for seq := int64(1); seq <= 2; seq++ {
		if _, err := a.Put(ctx, seq, []byte(fmt.Sprintf(`{"seq":%d}`, seq))); err != nil {
			t.Fatal(err)
		}
	}
	c, ok, err := a.Claim(ctx)
	if err != nil || !ok || c.Seq != 1 || c.Retaken {
		t.Fatalf("a claims %+v %v %v, want seq 1", c, ok, err)
	}
	// a holds 1 (a stopped replica, say): b takes the next one.
	c, ok, err = b.Claim(ctx)
	if err != nil || !ok || c.Seq != 2 {
		t.Fatalf("b claims %+v %v %v, want seq 2", c, ok, err)
	}
	if err := b.Ack(ctx, 2, true); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := b.Claim(ctx); ok {
		t.Fatal("b claimed the batch a holds before its lease expired")
	}
	var got telemetry.Claimed
	testutil.Eventually(t, 10*lease, "the lease to expire", func() bool {
		got, ok, err = b.Claim(ctx)
		return err == nil && ok
	})
	if got.Seq != 1 || !got.Retaken || !bytes.Equal(got.Data, []byte(`{"seq":1}`)) {
		t.Fatalf("b took %+v, want seq 1, retaken", got)
	}
	if err := b.Ack(ctx, 1, true); err != nil {
		t.Fatal(err)
	}
	st, err := a.SpoolStats(ctx)
	if err != nil || st.Batches != 0 {
		t.Fatalf("spool after both acks: %+v %v", st, err)
	}
	p, err := a.Progress(ctx)
	if err != nil || p.LastSentSeq != 2 || p.LastSentAt.IsZero() {
		t.Fatalf("progress %+v %v", p, err)
	}
}

// TestTelemetrySpoolBounds: past the bounds the oldest batches go, and are
// counted for the whole deployment.
func TestTelemetrySpoolBounds(t *testing.T) {
	rs := replicas(t, 2, postgres.TelemetryOptions{MaxBatches: 3, MaxBytes: 1 << 20})
	ctx := context.Background()
	var dropped int
	for seq := int64(1); seq <= 5; seq++ {
		n, err := rs[seq%2].Put(ctx, seq, []byte("batch"))
		if err != nil {
			t.Fatal(err)
		}
		dropped += n
	}
	// A batch put again (its first commit's answer was lost) is the same
	// batch: no error, nothing new stored.
	if n, err := rs[0].Put(ctx, 5, []byte("batch")); err != nil || n != 0 {
		t.Fatalf("putting batch 5 again: dropped %d, %v", n, err)
	}
	st, err := rs[0].SpoolStats(ctx)
	if err != nil || st.Batches != 3 || st.Dropped != 2 || dropped != 2 || st.MaxSeq != 5 {
		t.Fatalf("stats %+v, dropped %d, %v", st, dropped, err)
	}
	c, ok, err := rs[1].Claim(ctx)
	if err != nil || !ok || c.Seq != 3 {
		t.Fatalf("oldest left %+v %v %v, want 3", c, ok, err)
	}
	small := replicas(t, 1, postgres.TelemetryOptions{MaxBatches: 100, MaxBytes: 10})[0]
	for seq := int64(1); seq <= 3; seq++ {
		if _, err := small.Put(ctx, seq, []byte("123456")); err != nil {
			t.Fatal(err)
		}
	}
	if st, _ := small.SpoolStats(ctx); st.Batches != 1 || st.Bytes != 6 || st.Dropped != 2 {
		t.Fatalf("byte bound: %+v", st)
	}
}

// TestTelemetryLedgerShared: each replica's entries are in the one
// ledger, and a batch is recorded once however many replicas send it.
func TestTelemetryLedgerShared(t *testing.T) {
	rs := replicas(t, 2, postgres.TelemetryOptions{})
	ctx := context.Background()
	for i, r := range rs {
		e := telemetry.LedgerEntry{Time: time.Now().UTC(), Subject: "s", MsgID: fmt.Sprintf("m-%d", i), Seq: int64(i + 1), Instance: fmt.Sprint("replica-", i)}
		if err := r.AppendLedger(ctx, e, []byte(fmt.Sprintf(`{"n":%d}`, i))); err != nil {
			t.Fatal(err)
		}
	}
	// Replica 1 retries the batch replica 0 recorded: no second entry.
	if err := rs[1].AppendLedger(ctx, telemetry.LedgerEntry{Seq: 1, Instance: "replica-1"}, []byte(`{"n":0}`)); err != nil {
		t.Fatal(err)
	}
	if err := rs[1].AppendLedger(ctx, telemetry.LedgerEntry{Kind: telemetry.KindEnrollment}, []byte(`{"url":"x"}`)); err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		l, err := r.Ledger(ctx)
		if err != nil || len(l) != 3 || l[0].Instance != "replica-0" || l[1].Instance != "replica-1" || l[2].Kind != telemetry.KindEnrollment ||
			string(l[1].Batch) != `{"n":1}` || l[0].SHA256 == "" {
			t.Fatalf("ledger %+v %v", l, err)
		}
	}
}

// TestTelemetryEnrollOnceSealed: replicas racing to enroll enroll once
// and all end with that enrollment; its seed, sealed under keys any
// replica can open, is nowhere in the database in plaintext.
func TestTelemetryEnrollOnceSealed(t *testing.T) {
	owner, app := pgtest.FreshDB(t)
	master, _, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	type replica struct {
		st *postgres.Telemetry
		kr *keyring.Keyring
	}
	var rs []replica
	for range 4 {
		db := pgtest.Open(t, app)
		kr, err := keyring.New(keyring.Options{Store: db.TelemetryKeys(), Master: master})
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, replica{db.TelemetryState(postgres.TelemetryOptions{}), kr})
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	var exchanges atomic.Int32
	ids := make([]string, len(rs))
	var wg sync.WaitGroup
	for i, r := range rs {
		wg.Go(func() {
			err := r.st.Enrolling(context.Background(), func(cur telemetry.Enrollment, ok bool) (telemetry.Enrollment, bool, error) {
				if ok {
					ids[i] = cur.EdgeID
					return cur, false, nil
				}
				exchanges.Add(1)
				time.Sleep(50 * time.Millisecond) // the token's exchange
				sealed, err := r.kr.Seal(context.Background(), telemetry.KeyOrg, keyring.PurposeTelemetry, "nats-seed", seed)
				if err != nil {
					return cur, false, err
				}
				e := telemetry.Enrollment{EdgeID: fmt.Sprint("edge_", i), SealedSeed: sealed}
				ids[i] = e.EdgeID
				return e, true, nil
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := exchanges.Load(); n != 1 {
		t.Fatalf("%d enrollment exchanges, want 1", n)
	}
	for i, r := range rs {
		e, ok, err := r.st.Enrollment(context.Background())
		if err != nil || !ok || e.EdgeID != ids[0] || ids[i] != ids[0] {
			t.Fatalf("replica %d: %q (%v %v), others %v", i, e.EdgeID, ok, err, ids)
		}
		got, err := r.kr.Open(context.Background(), telemetry.KeyOrg, keyring.PurposeTelemetry, "nats-seed", e.SealedSeed)
		if err != nil || !bytes.Equal(got, seed) {
			t.Fatalf("replica %d cannot open the seed: %v", i, err)
		}
	}
	scanTablesFor(t, owner, seed)
}

// scanTablesFor fails if needle is in any row of any table of the
// database, as text or as bytes.
func scanTablesFor(t *testing.T, ownerURL string, needle []byte) {
	t.Helper()
	conn := connect(t, ownerURL)
	ctx := context.Background()
	rows, err := conn.Query(ctx, `SELECT tablename FROM pg_tables WHERE schemaname = current_schema()`)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, n)
	}
	rows.Close()
	// Tenant tables hide their rows from the owner (forced row-level
	// security); the telemetry tables, where the seed would be, do not.
	scanned := 0
	for _, tbl := range tables {
		var dump []byte
		err := conn.QueryRow(ctx, fmt.Sprintf(`SELECT convert_to(COALESCE(string_agg(x::text, E'\n'), ''), 'UTF8') FROM %q x`, tbl)).Scan(&dump)
		if err != nil {
			t.Fatalf("dump %s: %v", tbl, err)
		}
		// As text, as a bytea's hex, as JSON's base64 of bytes.
		for _, form := range []string{string(needle), hex.EncodeToString(needle), base64.StdEncoding.EncodeToString(needle)} {
			if bytes.Contains(dump, []byte(form)) {
				t.Fatalf("table %s holds the secret in plaintext", tbl)
			}
		}
		if tbl == "telemetry_state" && bytes.Contains(dump, []byte("edge_")) {
			scanned++
		}
	}
	if scanned != 1 {
		t.Fatal("the scan did not see the enrollment row")
	}
}
