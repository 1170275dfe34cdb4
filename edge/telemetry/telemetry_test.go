package telemetry_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/keyring"
	"github.com/persiv/codex/edge/keyring/keyringtest"
	"github.com/persiv/codex/edge/keyring/local"
	"github.com/persiv/codex/edge/telemetry"
	"github.com/persiv/codex/shared/wire"
)

type fixedLabels struct{}

func (fixedLabels) Workspace(org string) string { return "ws-" + org }
func (fixedLabels) KeyRef(_, key string) string { return "k-" + key }
func rec(org, key, model string, status int) edge.RequestRecord {
	return edge.RequestRecord{OrgID: org, KeyID: key, Provider: edge.OpenAI, Model: model, Status: status, Cache: edge.CacheMiss,
		Usage:     edge.Usage{Input: edge.Known(10), CachedInput: edge.Known(2), Output: edge.Known(5)},
		CostKnown: true, CostNanoUSD: 1000, SavedNanoUSD: 7, Latency: 30 * time.Millisecond}
}

func key(ws, model, kr string, cs wire.CacheStatus, sc wire.StatusClass) wire.RowKey {
	return wire.RowKey{Workspace: ws, Provider: "openai", Model: model, KeyRef: kr, CacheStatus: cs, StatusClass: sc}
}

// run aggregates recs in one window and returns its rows by key.
func run(t *testing.T, recs []edge.RequestRecord) (map[wire.RowKey]wire.UsageRow, telemetry.AggregatorStats) {
	t.Helper()
	a := telemetry.NewAggregator(len(recs) + 1)
	a.SetOn(true)
	for _, r := range recs {
		if !a.Record(r) {
			t.Fatal("record refused")
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan telemetry.Window, 4)
	done := make(chan struct{})
	go func() { defer close(done); a.Run(ctx, time.Hour, fixedLabels{}, func(w telemetry.Window) { got <- w }) }()
	a.Flush(context.Background())
	cancel()
	<-done
	w := <-got
	if !w.End.After(w.Start) {
		t.Fatalf("window %v..%v", w.Start, w.End)
	}
	out := map[wire.RowKey]wire.UsageRow{}
	for _, r := range w.Rows {
		out[r.Key()] = r
	}
	return out, a.Stats()
}

func TestAggregatorRows(t *testing.T) {
	t.Parallel()
	noCost := rec("o1", "k1", "gpt-4o", 200)
	noCost.CostKnown, noCost.CostNanoUSD = false, 0
	noCost.Usage.Output = edge.Count{}
	weird := rec("o1", "k1", "model with spaces", 0)
	weird.Cache = ""
	cases := []struct {
		name string
		recs []edge.RequestRecord
		want map[wire.RowKey]func(wire.UsageRow) bool
	}{
		{"sums one key", []edge.RequestRecord{rec("o1", "k1", "gpt-4o", 200), rec("o1", "k1", "gpt-4o", 201)},
			map[wire.RowKey]func(wire.UsageRow) bool{
				key("ws-o1", "gpt-4o", "k-k1", wire.CacheMiss, wire.Status2xx): func(r wire.UsageRow) bool {
					return r.Requests == 2 && r.Input.Sum == 20 && r.CachedInput.Sum == 4 && r.Output.Sum == 10 &&
						r.CacheWrite.Unknown == 2 && r.CostNanoUSD == 2000 && r.SavedNanoUSD == 14 && r.LatencyMS[2] == 2
				}}},
		{"unknowns counted, not zero", []edge.RequestRecord{rec("o1", "k1", "gpt-4o", 200), noCost},
			map[wire.RowKey]func(wire.UsageRow) bool{
				key("ws-o1", "gpt-4o", "k-k1", wire.CacheMiss, wire.Status2xx): func(r wire.UsageRow) bool {
					return r.Requests == 2 && r.CostUnknown == 1 && r.CostNanoUSD == 1000 && r.Output.Sum == 5 && r.Output.Unknown == 1
				}}},
		{"split by org, key, status", []edge.RequestRecord{rec("o1", "k1", "m", 200), rec("o2", "k1", "m", 200), rec("o1", "k2", "m", 200), rec("o1", "k1", "m", 429)},
			map[wire.RowKey]func(wire.UsageRow) bool{
				key("ws-o1", "m", "k-k1", wire.CacheMiss, wire.Status2xx): func(r wire.UsageRow) bool { return r.Requests == 1 },
				key("ws-o2", "m", "k-k1", wire.CacheMiss, wire.Status2xx): func(r wire.UsageRow) bool { return r.Requests == 1 },
				key("ws-o1", "m", "k-k2", wire.CacheMiss, wire.Status2xx): func(r wire.UsageRow) bool { return r.Requests == 1 },
				key("ws-o1", "m", "k-k1", wire.CacheMiss, wire.Status4xx): func(r wire.UsageRow) bool { return r.Requests == 1 },
			}},
		{"labels outside the wire charset", []edge.RequestRecord{weird},
			map[wire.RowKey]func(wire.UsageRow) bool{
				key("ws-o1", "unknown", "k-k1", wire.CacheBypass, wire.StatusError): func(r wire.UsageRow) bool { return r.Requests == 1 },
			}},
		{"no org: skipped", []edge.RequestRecord{rec("", "", "m", 401)}, map[wire.RowKey]func(wire.UsageRow) bool{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rows, _ := run(t, c.recs)
			if len(rows) != len(c.want) {
				t.Fatalf("%d rows, want %d: %+v", len(rows), len(c.want), rows)
			}
			for k, ok := range c.want {
				r, found := rows[k]
				if !found || !ok(r) {
					t.Fatalf("row %+v: %+v (found %v)", k, r, found)
				}
			}
			b := wire.UsageBatch{SchemaVersion: 1, WindowStart: time.Now().UTC().Add(-time.Minute), WindowEnd: time.Now().UTC(), OrgID: "org", EdgeID: "edge", Seq: 1}
			for _, r := range rows {
				b.Rows = append(b.Rows, r)
			}
			if b.Rows == nil {
				b.Rows = []wire.UsageRow{}
			}
			if _, err := wire.Encode(&b); err != nil {
				t.Fatalf("rows do not encode: %v", err)
			}
		})
	}
}

func TestAggregatorOffAndFull(t *testing.T) {
	t.Parallel()
	a := telemetry.NewAggregator(2)
	if a.Record(rec("o", "k", "m", 200)) {
		t.Fatal("an aggregator that is off took a record")
	}
	a.SetOn(true)
	for i := range 3 {
		if ok := a.Record(rec("o", "k", "m", 200)); ok != (i < 2) {
			t.Fatalf("record %d: %v", i, ok)
		}
	}
	if st := a.Stats(); st.Accepted != 2 || st.Dropped != 1 || st.Depth != 2 {
		t.Fatalf("stats %+v", st)
	}
}

type sink struct {
	ok bool
	n  int
}

func (s *sink) Record(edge.RequestRecord) bool { s.n++; return s.ok }

func TestFanout(t *testing.T) {
	t.Parallel()
	first, second := &sink{ok: true}, &sink{ok: false}
	if !(telemetry.Fanout{first, second}).Record(edge.RequestRecord{}) || first.n != 1 || second.n != 1 {
		t.Fatal("fan-out must reach both and report the first")
	}
	if (telemetry.Fanout{second, first}).Record(edge.RequestRecord{}) {
		t.Fatal("fan-out reports the first sink's answer")
	}
}

func TestPseudonyms(t *testing.T) {
	t.Parallel()
	p, q := telemetry.Pseudonyms{Secret: []byte("a")}, telemetry.Pseudonyms{Secret: []byte("b")}
	if again := p.Workspace("org_1"); p.Workspace("org_1") != again || p.Workspace("org_1") == q.Workspace("org_1") || p.Workspace("org_1") == p.Workspace("org_2") {
		t.Fatal("pseudonyms must be stable per secret and differ across secrets and ids")
	}
	if strings.Contains(p.Workspace("org_1"), "org_1") || !wire.LabelChars.Valid(p.Workspace("org_1")) || !wire.LabelChars.Valid(p.KeyRef("o", "key_1")) {
		t.Fatal("pseudonyms must be labels that hide the id")
	}
	if p.KeyRef("o1", "k") == p.KeyRef("o2", "k") {
		t.Fatal("key refs are scoped by org")
	}
}

func TestLabel(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"Acme Corp": "Acme-Corp", "  x": "x", "ünï": "n--", "": "", "a.b:c_d-e": "a.b:c_d-e", "---": ""} {
		if got := telemetry.Label(in); got != want {
			t.Errorf("Label(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzLabel(f *testing.F) {
	for _, s := range []string{"Acme Corp", "", "---", strings.Repeat("x", 100), "日本"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if l := telemetry.Label(s); l != "" && !wire.LabelChars.Valid(l) {
			t.Fatalf("Label(%q) = %q is not a wire label", s, l)
		}
	})
}

func TestSpool(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := telemetry.OpenSpool(dir, 3, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	for seq := int64(1); seq <= 5; seq++ {
		if _, err := s.Put(seq, []byte(fmt.Sprint("batch", seq))); err != nil {
			t.Fatal(err)
		}
	}
	if st := s.Stats(); st.Batches != 3 || st.Dropped != 2 {
		t.Fatalf("bounded by count: %+v", st)
	}
	// Reopened (a restart): the same batches, oldest first.
	s, err = telemetry.OpenSpool(dir, 3, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	for want := int64(3); want <= 5; want++ {
		seq, data, ok, err := s.Oldest()
		if err != nil || !ok || seq != want || string(data) != fmt.Sprint("batch", want) {
			t.Fatalf("oldest = %d %q %v %v, want %d", seq, data, ok, err, want)
		}
		if err := s.Remove(seq); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, ok, _ := s.Oldest(); ok {
		t.Fatal("spool not empty")
	}
	// Bounded by bytes, always keeping the newest.
	b, err := telemetry.OpenSpool(t.TempDir(), 100, 10)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Put(1, []byte("123456")); err != nil {
		t.Fatal(err)
	}
	if n, _ := b.Put(2, []byte("123456")); n != 1 {
		t.Fatalf("byte bound dropped %d", n)
	}
	if seq, _, _, _ := b.Oldest(); seq != 2 {
		t.Fatalf("kept %d, want the newest", seq)
	}
}

func TestLedger(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "ledger.jsonl")
	l := telemetry.NewLedger(path)
	batch := []byte(`{"schema_version":1,"rows":[]}`)
	for seq := int64(1); seq <= 2; seq++ {
		if err := l.Append(telemetry.LedgerEntry{Time: time.Now().UTC(), Subject: "s", MsgID: fmt.Sprint("e:", seq), Seq: seq}, batch); err != nil {
			t.Fatal(err)
		}
	}
	// A torn last line (crash mid-append) is ignored.
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(`{"time":"2026`); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := telemetry.ReadLedger(path)
	if err != nil || len(got) != 2 {
		t.Fatalf("%d entries, %v", len(got), err)
	}
	if !bytes.Equal(got[1].Batch, batch) || got[1].Bytes != len(batch) || len(got[1].SHA256) != 64 {
		t.Fatalf("entry %+v does not hold the exact bytes", got[1])
	}
}

func FuzzParseLedger(f *testing.F) {
	f.Add([]byte(`{"time":"2026-01-01T00:00:00Z","seq":1,"batch":{}}` + "\n"))
	f.Add([]byte("{\n}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := telemetry.ParseLedger(bytes.NewReader(data))
		if err == nil && len(entries) > bytes.Count(data, []byte("\n"))+1 {
			t.Fatalf("%d entries from %d lines", len(entries), bytes.Count(data, []byte("\n"))+1)
		}
	})
}

func newKeyring(t *testing.T, ks keyring.Store, dir string) *keyring.Keyring {
	t.Helper()
	m, _, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	kr, err := keyring.New(keyring.Options{Store: ks, Master: m})
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

func TestKeyStoreAcrossProcesses(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "keys.json")
	a, err := telemetry.OpenKeyStore(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := telemetry.OpenKeyStore(path) // a running serve, opened before
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	sealed, err := newKeyring(t, a, dir).Seal(ctx, telemetry.KeyOrg, keyring.PurposeTelemetry, "nats-seed", []byte("seed"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := newKeyring(t, b, dir).Open(ctx, telemetry.KeyOrg, keyring.PurposeTelemetry, "nats-seed", sealed)
	if err != nil || string(got) != "seed" {
		t.Fatalf("open from another instance: %q %v", got, err)
	}
	raw, _ := os.ReadFile(path)
	if bytes.Contains(raw, []byte("seed")) && !bytes.Contains(raw, []byte("wrapped")) {
		t.Fatal("key store holds plaintext")
	}
	if _, err := newKeyring(t, b, dir).Open(ctx, telemetry.KeyOrg, keyring.PurposeTelemetry, "pseudonym-secret", sealed); err == nil {
		t.Fatal("a sealed seed opened under another record key")
	}
}

func TestEnrollRefusesPlainRemoteHTTP(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ks, _ := telemetry.OpenKeyStore(filepath.Join(dir, "keys.json"))
	kr := newKeyring(t, ks, dir)
	for _, u := range []string{"http://cp.example.com", "ftp://x", "not a url"} {
		if _, err := telemetry.Enroll(context.Background(), telemetry.Dir(dir), kr, http.DefaultClient, u, "tok", "e", "1"); err == nil {
			t.Errorf("enrolled at %q", u)
		}
	}
	if _, ok, _ := telemetry.Dir(dir).Enrollment(); ok {
		t.Fatal("a refused enrollment was stored")
	}
}

func TestSharingOffByDefault(t *testing.T) {
	t.Parallel()
	d := telemetry.Dir(t.TempDir())
	st, err := telemetry.ReadStatus(d, 10, 100)
	if err != nil || st.Sharing || st.Enrolled {
		t.Fatalf("fresh status %+v %v", st, err)
	}
	if err := d.SetSharing(true, "cli"); err != nil {
		t.Fatal(err)
	}
	if st, _ := telemetry.ReadStatus(d, 10, 100); !st.Sharing || st.SharingChangedAt == nil {
		t.Fatalf("status after on: %+v", st)
	}
}

func BenchmarkRecord(b *testing.B) {
	a := telemetry.NewAggregator(1 << 16)
	a.SetOn(true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go a.Run(ctx, time.Hour, fixedLabels{}, func(telemetry.Window) {})
	r := rec("org_1", "key_1", "gpt-4o", 200)
	b.ReportAllocs()
	for b.Loop() {
		a.Record(r)
	}
}

func BenchmarkRecordOff(b *testing.B) {
	a := telemetry.NewAggregator(1)
	r := rec("org_1", "key_1", "gpt-4o", 200)
	b.ReportAllocs()
	for b.Loop() {
		a.Record(r)
	}
}

func TestNames(t *testing.T) {
	t.Parallel()
	calls := 0
	n := &telemetry.Names{
		OrgName: func(_ context.Context, id string) (string, error) {
			calls++
			if id == "org_gone" {
				return "", edge.ErrNotFound
			}
			return "Acme Corp", nil
		},
		KeyName: func(_ context.Context, id string) (string, error) { return "alice's key", nil },
	}
	if got := n.Workspace("org_1"); got != "Acme-Corp" {
		t.Fatalf("workspace %q", got)
	}
	n.Workspace("org_1")
	if calls != 1 {
		t.Fatalf("%d lookups for one org, want 1 (cached)", calls)
	}
	if got := n.Workspace("org_gone"); got != "org_gone" {
		t.Fatalf("unknown org labelled %q, want its id", got)
	}
	if got := n.KeyRef("org_1", "key_1"); got != "alice-s-key" || !wire.LabelChars.Valid(got) {
		t.Fatalf("key ref %q", got)
	}
	if got := n.KeyRef("org_1", ""); got != "none" {
		t.Fatalf("no key: %q", got)
	}
}

// The telemetry key store keeps what every keyring.Store keeps, the seal
// counts included, across reopening the file.
func TestKeyStoreContract(t *testing.T) {
	t.Parallel()
	keyringtest.StoreContract(t, func(t *testing.T) keyring.Store {
		ks, err := telemetry.OpenKeyStore(filepath.Join(t.TempDir(), "keys.json"))
		if err != nil {
			t.Fatal(err)
		}
		return ks
	})
}

// TestFlushGivenUp: a caller that stops waiting for a flush (its context
// ends while the window is being emitted) leaves the aggregator running:
// it once blocked for ever on telling that caller the flush was done.
func TestFlushGivenUp(t *testing.T) {
	a := telemetry.NewAggregator(4)
	a.SetOn(true)
	emitting, release := make(chan struct{}), make(chan struct{})
	var emitted atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go a.Run(ctx, time.Hour, fixedLabels{}, func(telemetry.Window) {
		if emitted.Add(1) == 1 {
			close(emitting)
			<-release
		}
	})
	gaveUp, stop := context.WithCancel(context.Background())
	flushed := make(chan struct{})
	go func() { a.Flush(gaveUp); close(flushed) }()
	<-emitting
	stop()
	<-flushed
	close(release)
	second, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	a.Flush(second)
	if second.Err() != nil || emitted.Load() != 2 {
		t.Fatalf("a second flush: %v, %d windows emitted; the aggregator is stuck", second.Err(), emitted.Load())
	}
}
