package telemetry_test

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/persiv/codex/edge/telemetry"
)

// statsCounting counts how often the spool's stats are read.
type statsCounting struct {
	telemetry.State
	reads atomic.Int64
}

func (s *statsCounting) SpoolStats(ctx context.Context) (telemetry.SpoolStats, error) {
	s.reads.Add(1)
	return s.State.SpoolStats(ctx)
}

// A scrape reads the spool's stats once (on Postgres, one query of the
// shared store), not once per spool metric.
func TestSpoolMetricsOneReadPerScrape(t *testing.T) {
	t.Parallel()
	d := telemetry.Dir(t.TempDir())
	files, err := telemetry.OpenFiles(d, 7, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	st := &statsCounting{State: files}
	ks, err := telemetry.OpenKeyStore(filepath.Join(string(d), "keys.json"))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := telemetry.Open(telemetry.Options{State: st, Dir: d, Keyring: newKeyring(t, ks, string(d)), Window: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(svc.Collectors()...)
	before := st.reads.Load()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if n := st.reads.Load() - before; n != 1 {
		t.Fatalf("one scrape read the spool's stats %d times, want 1", n)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		m := mf.GetMetric()[0]
		got[mf.GetName()] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
	}
	if got["codex_edge_telemetry_spool_max_batches"] != 7 || got["codex_edge_telemetry_spool_max_bytes"] != 1<<20 {
		t.Fatalf("spool bounds %v", got)
	}
	if _, ok := got["codex_edge_telemetry_spool_dropped_total"]; !ok {
		t.Fatal("no spool_dropped_total metric")
	}
}
