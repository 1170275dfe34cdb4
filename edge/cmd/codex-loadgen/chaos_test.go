package main

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeOutcomes(t *testing.T, dir string, os_ []*chaosOutcome, complete bool) string {
	t.Helper()
	p := filepath.Join(dir, "outcomes.jsonl")
	var b strings.Builder
	enc := json.NewEncoder(&b)
	for _, o := range os_ {
		if err := enc.Encode(o); err != nil {
			t.Fatal(err)
		}
	}
	if complete {
		b.WriteString("null\n")
	}
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestChaosReport(t *testing.T) {
	dir := t.TempDir()
	faults := filepath.Join(dir, "faults.txt")
	if err := os.WriteFile(faults, []byte("redis 1000 2000\nedge2 5000 6000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ok := func(at int64) *chaosOutcome { return &chaosOutcome{At: at, OK: true, Answered: true, Status: 200} }
	lost := &chaosOutcome{At: 1500, Edge: 1, Kind: "stream", Err: "unexpected EOF"}
	tests := []struct {
		name       string
		outcomes   []*chaosOutcome
		complete   bool
		rows, cp   int64
		pass       bool
		wantErr    bool
		wantInText string
	}{
		{"all held", []*chaosOutcome{ok(10), ok(1500), ok(5500), ok(9000)}, true, 4, 4, true, false, "lost: 0"},
		{"a request lost in a fault", []*chaosOutcome{ok(10), lost, ok(2500)}, true, 2, 2, false, false, "FAIL: stream to edge 1: unexpected EOF"},
		{"a kept-alive connection closed under a request", []*chaosOutcome{{At: 5000, Edge: 1, Kind: "hit", Err: "EOF", Reused: true}}, true, 0, 0, false, false,
			"FAIL: hit to edge 1: EOF (on a kept-alive connection)"},
		// 1.5 s after Redis came back, within the 2 s grace: Redis's
		// row counts it (sent 1, failed 1), not the no-fault row.
		{"grace after recovery counts", []*chaosOutcome{{At: 3500, Err: "refused"}}, true, 0, 0, false, false, "\nredis                         1        1 "},
		{"a metadata row lost", []*chaosOutcome{ok(10), ok(20)}, true, 1, 1, false, false, "lost: 1) FAIL"},
		{"a metric doubled", []*chaosOutcome{ok(10)}, true, 1, 2, false, false, "+1) FAIL"},
		{"cut off", []*chaosOutcome{ok(10)}, false, 1, 1, false, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := writeOutcomes(t, dir, tt.outcomes, tt.complete)
			var b strings.Builder
			pass, err := chaosReport(&b, out, faults, 2000*1e6, tt.rows, tt.cp)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if pass != tt.pass || !strings.Contains(b.String(), tt.wantInText) {
				t.Errorf("pass %v (want %v); report:\n%s\nwant it to contain %q", pass, tt.pass, b.String(), tt.wantInText)
			}
		})
	}
	if _, err := chaosReport(io.Discard, filepath.Join(dir, "missing"), faults, 0, 0, 0); err == nil {
		t.Error("a missing outcomes file reported no error")
	}
}
