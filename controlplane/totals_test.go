package controlplane

import (
	"testing"

	"github.com/persiv/codex/shared/wire"
)

func TestTotalsAdd(t *testing.T) {
	a := Totals{Requests: 1, Input: wire.Tokens{Sum: 10, Unknown: 1}, Reasoning: wire.Tokens{Sum: 2}, CostNanoUSD: 5, CostUnknown: 1}
	a.LatencyMS[0] = 3
	b := Totals{Requests: 2, Input: wire.Tokens{Sum: 5}, CachedInput: wire.Tokens{Sum: 4, Unknown: 2}, CacheWrite: wire.Tokens{Sum: 1},
		Output: wire.Tokens{Sum: 7, Unknown: 1}, Reasoning: wire.Tokens{Unknown: 1}, CostNanoUSD: 6, SavedNanoUSD: 9}
	b.LatencyMS[0], b.LatencyMS[len(b.LatencyMS)-1] = 1, 4
	a.Add(&b)
	want := Totals{Requests: 3, Input: wire.Tokens{Sum: 15, Unknown: 1}, CachedInput: wire.Tokens{Sum: 4, Unknown: 2}, CacheWrite: wire.Tokens{Sum: 1},
		Output: wire.Tokens{Sum: 7, Unknown: 1}, Reasoning: wire.Tokens{Sum: 2, Unknown: 1}, CostNanoUSD: 11, CostUnknown: 1, SavedNanoUSD: 9}
	want.LatencyMS[0], want.LatencyMS[len(want.LatencyMS)-1] = 4, 4
	if a != want {
		t.Fatalf("Add:\n got %+v\nwant %+v", a, want)
	}
}
