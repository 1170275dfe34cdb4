package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/persiv/codex/controlplane"
	"github.com/persiv/codex/controlplane/store/storetest"
	"github.com/persiv/codex/shared/wire"
)

// sent sums batches the way the overview must: the expected totals.
type sent struct {
	requests, input, cached, write, output, reasoning, cost, costUnknown, saved, hits, misses int64
}

func (s *sent) add(b *wire.UsageBatch) {
	for _, r := range b.Rows {
		s.requests += r.Requests
		s.input += r.Input.Sum
		s.cached += r.CachedInput.Sum
		s.write += r.CacheWrite.Sum
		s.output += r.Output.Sum
		s.reasoning += r.Reasoning.Sum
		s.cost += r.CostNanoUSD
		s.costUnknown += r.CostUnknown
		s.saved += r.SavedNanoUSD
		switch r.CacheStatus {
		case wire.CacheHit:
			s.hits += r.Requests
		case wire.CacheMiss:
			s.misses += r.Requests
		}
	}
}

// variedBatch is a batch whose rows differ in every counter, so that a
// total summing the wrong field cannot pass.
func variedBatch(orgID, edgeID string, seq int64, start time.Time) *wire.UsageBatch {
	b := storetest.Batch(orgID, edgeID, seq, start, 4)
	for i := range b.Rows {
		r := &b.Rows[i]
		k := seq*10 + int64(i)
		r.Workspace = []string{"ws-research", "ws-support"}[i%2]
		r.Provider = []string{"openai", "anthropic"}[i/2]
		r.Model = []string{"gpt-4o", "gpt-4o-mini", "claude-sonnet-4", "claude-haiku-4"}[i]
		r.KeyRef = "key-" + strconv.Itoa(i%3)
		r.CacheStatus = []wire.CacheStatus{wire.CacheMiss, wire.CacheHit, wire.CacheBypass, wire.CacheMiss}[i]
		r.Requests = 3 + k%7
		r.Input = wire.Tokens{Sum: 1000 + 37*k}
		r.CachedInput = wire.Tokens{Sum: 200 + 11*k}
		r.CacheWrite = wire.Tokens{Sum: 50 + 3*k, Unknown: 1}
		r.Output = wire.Tokens{Sum: 300 + 13*k}
		r.Reasoning = wire.Tokens{Sum: 40 + k}
		r.CostNanoUSD = 1_234_567 * (k + 1)
		r.CostUnknown = k % 2
		r.SavedNanoUSD = 98_765 * (k + 1)
		r.LatencyMS = [wire.LatencyBuckets]int64{}
		r.LatencyMS[2+i] = r.Requests - 1
		r.LatencyMS[8] = 1
	}
	return b
}

func TestOverviewTotalsEqualStoredBatches(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	org := f.env.Org(t)
	u := f.user(t, org, "owner@acme.example", controlplane.RoleOwner)
	edge := f.env.EnrollEdge(t, org)
	now := f.clock.now()
	var want sent
	for seq := int64(1); seq <= 20; seq++ {
		b := variedBatch(org, edge.EdgeID, seq, now.Truncate(time.Minute).Add(-time.Duration(seq)*time.Minute))
		want.add(b)
		if _, err := f.env.Store.IngestBatch(ctx, b, now); err != nil {
			t.Fatal(err)
		}
	}
	c := f.session(t, u)
	for _, rg := range []string{"1h", "6h", "24h", "7d", "30d", "90d"} {
		t.Run(rg, func(t *testing.T) {
			r := c.get("/overview?range=" + rg)
			wantStatus(t, "overview", r, http.StatusOK)
			for id, v := range map[string]int64{
				"total-requests": want.requests, "tokens-input": want.input, "tokens-cached": want.cached, "tokens-write": want.write,
				"tokens-output": want.output, "tokens-reasoning": want.reasoning, "total-tokens": want.input + want.cached + want.write + want.output,
			} {
				if got := attr(t, r.body, id, "data-value"); got != v {
					t.Errorf("%s = %d, want %d", id, got, v)
				}
			}
			if got := attr(t, r.body, "total-cost", "data-nano"); got != want.cost {
				t.Errorf("cost = %d nano-USD, want %d", got, want.cost)
			}
			if got := attr(t, r.body, "total-saved", "data-nano"); got != want.saved {
				t.Errorf("saved = %d nano-USD, want %d", got, want.saved)
			}
			wantText(t, r.body, "total-requests", num(want.requests))
			wantText(t, r.body, "total-cost", usd(want.cost))
			wantText(t, r.body, "hit-rate", pct(float64(want.hits)/float64(want.hits+want.misses)))

			var api struct {
				Totals     apiTotals                    `json:"totals"`
				Series     []apiTotals                  `json:"series"`
				Breakdowns map[string][]json.RawMessage `json:"breakdowns"`
			}
			ar := c.get("/api/v1/dashboard/usage?range=" + rg)
			wantStatus(t, "api", ar, http.StatusOK)
			if err := json.Unmarshal([]byte(ar.body), &api); err != nil {
				t.Fatal(err)
			}
			tt := api.Totals
			if tt.Requests != want.requests || tt.InputTokens != want.input || tt.OutputTokens != want.output || tt.CostNanoUSD != want.cost ||
				tt.SavedNanoUSD != want.saved || tt.CostUnknown != want.costUnknown || tt.CacheWriteTokens != want.write || tt.ReasoningTokens != want.reasoning {
				t.Errorf("API totals %+v, sent %+v", tt, want)
			}
			var series int64
			for _, p := range api.Series {
				series += p.Requests
			}
			if series != want.requests {
				t.Errorf("the series sums to %d requests, want %d", series, want.requests)
			}
			if len(api.Breakdowns["model"]) != 4 || len(api.Breakdowns["provider"]) != 2 || len(api.Breakdowns["workspace"]) != 2 || len(api.Breakdowns["key_ref"]) != 3 {
				t.Errorf("breakdowns: %d models, %d providers, %d workspaces, %d keys", len(api.Breakdowns["model"]), len(api.Breakdowns["provider"]), len(api.Breakdowns["workspace"]), len(api.Breakdowns["key_ref"]))
			}
		})
	}
}

func attr(t testing.TB, body, id, name string) int64 {
	t.Helper()
	m := regexp.MustCompile(`id="` + id + `"[^>]*` + name + `="(-?\d+)"`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no %s on #%s", name, id)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	return n
}

func wantText(t testing.TB, body, id, text string) {
	t.Helper()
	m := regexp.MustCompile(`id="` + id + `"[^>]*>([^<]*)<`).FindStringSubmatch(body)
	if m == nil || m[1] != text {
		t.Errorf("#%s shows %q, want %q", id, m, text)
	}
}

func TestPercentile(t *testing.T) {
	h := func(counts map[int]int64) *[wire.LatencyBuckets]int64 {
		var a [wire.LatencyBuckets]int64
		for i, n := range counts {
			a[i] = n
		}
		return &a
	}
	for _, tc := range []struct {
		name string
		h    *[wire.LatencyBuckets]int64
		q    float64
		want float64
	}{
		{"empty", h(nil), 0.5, -1},
		{"one bucket, median in its middle", h(map[int]int64{3: 10}), 0.5, 75}, // (50, 100]
		{"first bucket starts at 0", h(map[int]int64{0: 4}), 0.5, 5},           // (0, 10]
		{"p95 in the upper bucket", h(map[int]int64{1: 90, 5: 10}), 0.95, 375}, // (250, 500], half way
		{"p50 at a bucket's top", h(map[int]int64{1: 50, 5: 50}), 0.5, 25},     // exactly the 50th
		{"open last bucket reports its floor", h(map[int]int64{13: 3}), 0.95, 120000},
	} {
		if got := Percentile(tc.h, tc.q); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("%s: Percentile(%v) = %v, want %v", tc.name, tc.q, got, tc.want)
		}
	}
}

func TestMoneyAndNumbers(t *testing.T) {
	for _, tc := range []struct {
		nano       int64
		usd, exact string
	}{
		{0, "$0.0000", "$0.000000000"},
		{1_234_567, "$0.0012", "$0.001234567"},
		{999_999_999, "$1.00", "$0.999999999"},
		{1_994_999_999, "$1.99", "$1.994999999"},
		{1_995_000_000, "$2.00", "$1.995000000"},
		{1_234_567_000_000_000, "$1,234,567.00", "$1,234,567.000000000"},
		{-2_500_000_000, "-$2.50", "-$2.500000000"},
	} {
		if got := usd(tc.nano); got != tc.usd {
			t.Errorf("usd(%d) = %q, want %q", tc.nano, got, tc.usd)
		}
		if got := usdExact(tc.nano); got != tc.exact {
			t.Errorf("usdExact(%d) = %q, want %q", tc.nano, got, tc.exact)
		}
	}
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", -1234567: "-1,234,567"} {
		if got := num(n); got != want {
			t.Errorf("num(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestRangeBoundsAreWholeSteps(t *testing.T) {
	now := time.Date(2026, 11, 29, 10, 37, 42, 0, time.UTC)
	for _, r := range Ranges {
		from, to := r.bounds(now)
		if !to.After(now) || to.Sub(from) != r.Span || from.Truncate(r.Step) != from || to.Sub(now) > r.Step {
			t.Errorf("%s: [%v, %v)", r.Key, from, to)
		}
		if got := fmt.Sprint(rangeByKey(r.Key).Key); got != r.Key {
			t.Errorf("rangeByKey(%s) = %s", r.Key, got)
		}
	}
	if rangeByKey("bogus").Key != defaultRange {
		t.Error("an unknown range does not fall back to the default")
	}
}

// TestOverviewShowsLimitsAndBudgets: the requests edges refused because of
// a rate limit or a budget show per key reference, and each budget's use
// as its edge last reported it, on the page and in the API.
func TestOverviewShowsLimitsAndBudgets(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	org := f.env.Org(t)
	u := f.user(t, org, "owner@acme.example", controlplane.RoleOwner)
	edge := f.env.EnrollEdge(t, org)
	now := f.clock.now()
	b := variedBatch(org, edge.EdgeID, 1, now.Truncate(time.Minute).Add(-time.Minute))
	b.Rows[0].Limited, b.Rows[1].BudgetRefused = 2, 3 // key-0, key-1
	b.Budgets = []wire.BudgetUse{{Workspace: "ws-research", KeyRef: "key-1", Period: "month", CapNanoUSD: 50e9, SpentNanoUSD: 12_500_000_000}}
	if _, err := f.env.Store.IngestBatch(ctx, b, now); err != nil {
		t.Fatal(err)
	}
	// An older edge's version 1 batch still counts.
	old := variedBatch(org, edge.EdgeID, 2, now.Truncate(time.Minute).Add(-2*time.Minute)).AsVersion(1)
	if _, err := f.env.Store.IngestBatch(ctx, old, now); err != nil {
		t.Fatal(err)
	}
	c := f.session(t, u)
	r := c.get("/overview?range=1h")
	wantStatus(t, "overview", r, http.StatusOK)
	if got := attr(t, r.body, "total-refused", "data-value"); got != 5 {
		t.Errorf("refused = %d, want 5", got)
	}
	for _, want := range []string{
		`<code>key-0</code>`, `<td class="num limited">2</td>`, `<td class="num budget-refused">3</td>`,
		`<code>ws-research</code></td><td class="name"><code>key-1</code></td><td>month</td>`, `title="$12.500000000"`,
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("overview lacks %s", want)
		}
	}
	var api struct {
		Totals  apiTotals   `json:"totals"`
		Budgets []apiBudget `json:"budgets"`
	}
	ar := c.get("/api/v1/dashboard/usage?range=1h")
	if err := json.Unmarshal([]byte(ar.body), &api); err != nil {
		t.Fatal(err)
	}
	if api.Totals.Limited != 2 || api.Totals.BudgetRefused != 3 || len(api.Budgets) != 1 || api.Budgets[0].SpentNanoUSD != 12_500_000_000 {
		t.Errorf("API: totals %+v, budgets %+v", api.Totals, api.Budgets)
	}
}
