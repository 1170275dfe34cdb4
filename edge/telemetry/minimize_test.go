package telemetry_test

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/telemetry"
	"github.com/persiv/codex/shared/wire"
)

// aggregate runs recs through an aggregator with m and returns the rows.
func aggregate(t *testing.T, m telemetry.Minimize, recs []edge.RequestRecord) []wire.UsageRow {
	t.Helper()
	return aggregateWindow(t, m, recs).Rows
}

// aggregateWindow runs recs through an aggregator with m and returns the
// window.
func aggregateWindow(t *testing.T, m telemetry.Minimize, recs []edge.RequestRecord) telemetry.Window {
	t.Helper()
	a := telemetry.NewAggregator(len(recs) + 1)
	a.Minimize = m
	a.SetOn(true)
	for _, r := range recs {
		a.Record(r)
	}
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan telemetry.Window, 4)
	done := make(chan struct{})
	go func() { defer close(done); a.Run(ctx, time.Hour, fixedLabels{}, func(w telemetry.Window) { got <- w }) }()
	a.Flush(context.Background())
	cancel()
	<-done
	return <-got
}

// TestMinimizeMemoriesAndAudit: memory uses and audit counts follow the
// dimensions (workspace, key_ref, memory) and the minimum count like
// rows do, and their totals survive.
func TestMinimizeMemoriesAndAudit(t *testing.T) {
	t.Parallel()
	style := edge.MemoryUse{Name: "style", Version: 2, Tokens: 100}
	tone := edge.MemoryUse{KeyID: "1", Name: "tone", Version: 1, Tokens: 10}
	var recs []edge.RequestRecord
	for i := range 6 {
		r := rec("a", "1", "gpt-4o", 200)
		r.Memories, r.Audit = []edge.MemoryUse{style, tone}, edge.AuditHash
		if i == 5 {
			r.OrgID, r.Memories, r.Audit = "b", []edge.MemoryUse{style}, edge.AuditFull
		}
		recs = append(recs, r)
	}
	recs = append(recs, rec("a", "2", "gpt-4o", 200)) // no memory, no audit record
	type mem struct {
		ws, key, name string
		version       int64
	}
	other := mem{"other", "other", "other", 0}
	tests := []struct {
		name  string
		m     telemetry.Minimize
		mems  map[mem]int64       // requests per use
		audit map[[2]string]int64 // records per workspace and level
	}{
		{"all dimensions", telemetry.Minimize{},
			map[mem]int64{{"ws-a", "none", "style", 2}: 5, {"ws-a", "k-1", "tone", 1}: 5, {"ws-b", "none", "style", 2}: 1},
			map[[2]string]int64{{"ws-a", "hash"}: 5, {"ws-b", "full"}: 1}},
		{"no memory", telemetry.Minimize{Dimensions: []string{"workspace", "key_ref"}},
			map[mem]int64{{"ws-a", "none", "other", 0}: 5, {"ws-a", "k-1", "other", 0}: 5, {"ws-b", "none", "other", 0}: 1},
			map[[2]string]int64{{"ws-a", "hash"}: 5, {"ws-b", "full"}: 1}},
		{"no workspace, no key", telemetry.Minimize{Dimensions: []string{"memory"}},
			map[mem]int64{{"other", "other", "style", 2}: 6, {"other", "other", "tone", 1}: 5},
			map[[2]string]int64{{"other", "hash"}: 5, {"other", "full"}: 1}},
		{"min count 2", telemetry.Minimize{MinCount: 2},
			map[mem]int64{{"ws-a", "none", "style", 2}: 5, {"ws-a", "k-1", "tone", 1}: 5, other: 1},
			map[[2]string]int64{{"ws-a", "hash"}: 5, {"other", "full"}: 1}},
		{"none", telemetry.Minimize{Dimensions: []string{}, MinCount: 100},
			map[mem]int64{other: 11},
			map[[2]string]int64{{"other", "hash"}: 5, {"other", "full"}: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := aggregateWindow(t, tt.m, recs)
			mems := map[mem]int64{}
			var tokens int64
			for _, u := range w.Memories {
				mems[mem{u.Workspace, u.KeyRef, u.Name, u.Version}] += u.Requests
				tokens += u.Tokens
				if u.Estimated != u.Requests {
					t.Fatalf("use %+v: every memory's tokens are estimated", u)
				}
			}
			audit := map[[2]string]int64{}
			for _, a := range w.Audit {
				audit[[2]string{a.Workspace, a.Level}] += a.Records
			}
			if !maps.Equal(mems, tt.mems) || !maps.Equal(audit, tt.audit) {
				t.Fatalf("memories %v, audit %v; want %v, %v", mems, audit, tt.mems, tt.audit)
			}
			if tokens != 6*100+5*10 {
				t.Fatalf("memory tokens %d: minimizing lost or doubled some", tokens)
			}
			b := wire.UsageBatch{SchemaVersion: wire.SchemaVersion, WindowStart: time.Now().UTC().Add(-time.Minute), WindowEnd: time.Now().UTC(),
				OrgID: "org_x", EdgeID: "edge_x", Seq: 1, Rows: w.Rows, Memories: w.Memories, Audit: w.Audit, Settings: tt.m.Settings()}
			if _, err := wire.Encode(&b); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestMinimize(t *testing.T) {
	t.Parallel()
	// 5 requests of org a/key 1/gpt-4o, 2 of a/2/gpt-4o-mini, 1 of b/3/o1.
	var recs []edge.RequestRecord
	for range 5 {
		recs = append(recs, rec("a", "1", "gpt-4o", 200))
	}
	recs = append(recs, rec("a", "2", "gpt-4o-mini", 200), rec("a", "2", "gpt-4o-mini", 200), rec("b", "3", "o1", 200))
	ok := wire.Status2xx
	miss := wire.CacheMiss
	tests := []struct {
		name string
		m    telemetry.Minimize
		want map[wire.RowKey]int64 // requests per row
	}{
		{"all dimensions", telemetry.Minimize{}, map[wire.RowKey]int64{
			key("ws-a", "gpt-4o", "k-1", miss, ok): 5, key("ws-a", "gpt-4o-mini", "k-2", miss, ok): 2, key("ws-b", "o1", "k-3", miss, ok): 1}},
		{"no key reference", telemetry.Minimize{Dimensions: []string{"workspace", "provider", "model"}}, map[wire.RowKey]int64{
			key("ws-a", "gpt-4o", "other", miss, ok): 5, key("ws-a", "gpt-4o-mini", "other", miss, ok): 2, key("ws-b", "o1", "other", miss, ok): 1}},
		{"no model, no key reference", telemetry.Minimize{Dimensions: []string{"workspace", "provider"}}, map[wire.RowKey]int64{
			key("ws-a", "other", "other", miss, ok): 7, key("ws-b", "other", "other", miss, ok): 1}},
		{"min count 2", telemetry.Minimize{MinCount: 2}, map[wire.RowKey]int64{
			key("ws-a", "gpt-4o", "k-1", miss, ok): 5, key("ws-a", "gpt-4o-mini", "k-2", miss, ok): 2,
			{Workspace: "other", Provider: "other", Model: "other", KeyRef: "other", CacheStatus: miss, StatusClass: ok}: 1}},
		{"min count 3 without model", telemetry.Minimize{Dimensions: []string{"workspace", "provider", "key_ref"}, MinCount: 3}, map[wire.RowKey]int64{
			key("ws-a", "other", "k-1", miss, ok): 5,
			{Workspace: "other", Provider: "other", Model: "other", KeyRef: "other", CacheStatus: miss, StatusClass: ok}: 3}},
		{"none", telemetry.Minimize{Dimensions: []string{}, MinCount: 100}, map[wire.RowKey]int64{
			{Workspace: "other", Provider: "other", Model: "other", KeyRef: "other", CacheStatus: miss, StatusClass: ok}: 8}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rows := aggregate(t, tt.m, recs)
			got := map[wire.RowKey]int64{}
			var cost int64
			for _, r := range rows {
				got[r.Key()] = r.Requests
				cost += r.CostNanoUSD
			}
			if len(got) != len(tt.want) {
				t.Fatalf("rows %v, want %v", got, tt.want)
			}
			for k, n := range tt.want {
				if got[k] != n {
					t.Fatalf("rows %v, want %v", got, tt.want)
				}
			}
			if cost != 8*1000 {
				t.Fatalf("cost %d: folding lost or doubled usage", cost)
			}
			b := wire.UsageBatch{SchemaVersion: wire.SchemaVersion, WindowStart: time.Now().UTC().Add(-time.Minute), WindowEnd: time.Now().UTC(),
				OrgID: "org_x", EdgeID: "edge_x", Seq: 1, Rows: rows, Settings: tt.m.Settings()}
			data, err := wire.Encode(&b)
			if err != nil {
				t.Fatal(err)
			}
			back, err := wire.Decode(data)
			if err != nil {
				t.Fatal(err)
			}
			if len(back.Settings.Dimensions) != len(tt.m.Settings().Dimensions) || back.Settings.MinCount != tt.m.MinCount {
				t.Fatalf("settings after the wire: %+v", back.Settings)
			}
		})
	}
}

// Windows without usage are not sent, but a heartbeat at most every
// Minimize.Heartbeat.
func TestHeartbeat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		heartbeat time.Duration
		want      []int // rows of each emitted window, for: empty, empty, one record, empty, shutdown
	}{
		{"every window (no heartbeat bound)", 0, []int{0, 0, 1, 0, 0}},
		{"heartbeat not due", time.Hour, []int{0, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := telemetry.NewAggregator(4)
			a.Minimize.Heartbeat = tt.heartbeat
			a.SetOn(true)
			ctx, cancel := context.WithCancel(context.Background())
			got := make(chan telemetry.Window, 8)
			done := make(chan struct{})
			go func() { defer close(done); a.Run(ctx, time.Hour, fixedLabels{}, func(w telemetry.Window) { got <- w }) }()
			a.Flush(ctx)
			a.Flush(ctx)
			a.Record(rec("a", "1", "gpt-4o", 200))
			a.Flush(ctx)
			a.Flush(ctx)
			cancel()
			<-done
			close(got)
			var rows []int
			for w := range got {
				rows = append(rows, len(w.Rows))
			}
			// The first window is always sent: the control plane learns
			// the edge is sharing.
			if len(rows) != len(tt.want) {
				t.Fatalf("windows with rows %v, want %v", rows, tt.want)
			}
			for i := range rows {
				if rows[i] != tt.want[i] {
					t.Fatalf("windows with rows %v, want %v", rows, tt.want)
				}
			}
		})
	}
}
