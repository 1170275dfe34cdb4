package telemetry_test

import (
	"context"
	"testing"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/telemetry"
	"github.com/persiv/codex/shared/wire"
)

// aggregate runs recs through an aggregator with m and returns the rows.
func aggregate(t *testing.T, m telemetry.Minimize, recs []edge.RequestRecord) []wire.UsageRow {
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
	return (<-got).Rows
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
