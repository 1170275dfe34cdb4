package dashboard

import (
	"context"
	"html/template"
	"net/http"
	"sort"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/sync/errgroup"

	"github.com/persiv/codex/controlplane"
	"github.com/persiv/codex/shared/wire"
)

// timeRange is a choice of the range picker.
type timeRange struct {
	Key   string
	Label string
	Span  time.Duration
	Step  time.Duration
}

// Ranges are the picker's choices; each reads the roll-up of its step.
var Ranges = []timeRange{
	{"1h", "Last hour", time.Hour, controlplane.Minute},
	{"6h", "Last 6 hours", 6 * time.Hour, controlplane.Minute},
	{"24h", "Last 24 hours", 24 * time.Hour, controlplane.Hour},
	{"7d", "Last 7 days", 7 * controlplane.Day, controlplane.Hour},
	{"30d", "Last 30 days", 30 * controlplane.Day, controlplane.Hour},
	{"90d", "Last 90 days", 90 * controlplane.Day, controlplane.Day},
}

const defaultRange = "24h"

func rangeByKey(k string) timeRange {
	for _, r := range Ranges {
		if r.Key == k {
			return r
		}
	}
	for _, r := range Ranges {
		if r.Key == defaultRange {
			return r
		}
	}
	panic("no default range")
}

// bounds returns [from, to) ending at the end of the step containing now,
// so that the current, partial bucket is included.
func (r timeRange) bounds(now time.Time) (from, to time.Time) {
	to = now.UTC().Truncate(r.Step).Add(r.Step)
	return to.Add(-r.Span), to
}

// Summary is usage summed over a range, with what is derived from it.
type Summary struct {
	controlplane.Totals
	Hits, Misses int64
}

// Tokens is every kind of token summed (input, cached input, cache
// writes, output; reasoning is a part of output).
func (s Summary) Tokens() int64 {
	return s.Input.Sum + s.CachedInput.Sum + s.CacheWrite.Sum + s.Output.Sum
}

// HitRate is the share of cacheable requests (hits and misses; bypasses
// are not cacheable) answered from the cache, or -1 with none.
func (s Summary) HitRate() float64 {
	if s.Hits+s.Misses == 0 {
		return -1
	}
	return float64(s.Hits) / float64(s.Hits+s.Misses)
}

// P50 and P95 are latency percentiles in milliseconds, or -1 with no
// requests.
func (s Summary) P50() float64 { return Percentile(&s.LatencyMS, 0.50) }
func (s Summary) P95() float64 { return Percentile(&s.LatencyMS, 0.95) }

// Percentile estimates the q-quantile of a latency histogram in
// milliseconds, interpolating linearly within the bucket it falls in; the
// open last bucket reports its lower bound. It returns -1 for an empty
// histogram.
func Percentile(h *[wire.LatencyBuckets]int64, q float64) float64 {
	var total int64
	for _, n := range h {
		total += n
	}
	if total == 0 {
		return -1
	}
	rank := q * float64(total)
	var cum int64
	for i, n := range h {
		if n == 0 {
			continue
		}
		if float64(cum+n) >= rank {
			lo := 0.0
			if i > 0 {
				lo = float64(wire.LatencyBoundsMS[i-1])
			}
			if i == len(wire.LatencyBoundsMS) {
				return lo
			}
			hi := float64(wire.LatencyBoundsMS[i])
			return lo + (hi-lo)*(rank-float64(cum))/float64(n)
		}
		cum += n
	}
	return float64(wire.LatencyBoundsMS[len(wire.LatencyBoundsMS)-1])
}

func (s *Summary) add(r *controlplane.UsageRow) {
	s.Totals.Add(&r.Totals)
	switch wire.CacheStatus(r.Key[controlplane.DimCacheStatus]) {
	case wire.CacheHit:
		s.Hits += r.Requests
	case wire.CacheMiss:
		s.Misses += r.Requests
	}
}

// Usage is the overview of one org over one range.
type Usage struct {
	Range    timeRange
	From, To time.Time
	Total    Summary
	Buckets  []time.Time // every step of the range, empty ones included
	Series   []Summary   // one per bucket
	// Breakdowns by workspace, model, provider and key reference, by
	// requests, most first.
	Breakdowns []Breakdown
	// Budgets are the budgets the org's edges last reported, with what
	// was spent of each in its current period.
	Budgets []BudgetRow
	// Memories are the memories in use, per workspace, and Audit the
	// audit records written per workspace and capture level, over the
	// hours the range touches (both are kept by the hour).
	Memories []WorkspaceMemories
	Audit    []WorkspaceAudit
}

// WorkspaceMemories are the memories injected into a workspace's
// requests: names, versions and tokens, never their text.
type WorkspaceMemories struct {
	Workspace string
	Uses      []wire.MemoryUse // most requests first
}

// WorkspaceAudit counts a workspace's audit records per capture level.
type WorkspaceAudit struct {
	Workspace        string
	None, Hash, Full int64
}

// BudgetRow is one reported budget.
type BudgetRow struct {
	controlplane.BudgetUse
	Share float64 // spent of the cap, at most 1
}

// Breakdown is usage split by one dimension.
type Breakdown struct {
	Dim   controlplane.Dimension
	Title string
	Rows  []BreakdownRow
	// Refusals shows the requests refused by a rate limit or a budget
	// (by key reference).
	Refusals bool
}

// BreakdownRow is one value of a breakdown.
type BreakdownRow struct {
	Name  string
	Share float64 // of the range's requests
	Summary
}

var breakdownDims = []struct {
	dim   controlplane.Dimension
	title string
}{
	{controlplane.DimModel, "Model"},
	{controlplane.DimProvider, "Provider"},
	{controlplane.DimWorkspace, "Workspace"},
	{controlplane.DimKeyRef, "Key reference"},
}

// maxBreakdownRows bounds a breakdown table; the rest is summed as "other".
const maxBreakdownRows = 10

// Overview computes an org's usage over r as of now.
func Overview(ctx context.Context, st controlplane.Store, orgID string, r timeRange, now time.Time) (*Usage, error) {
	u := &Usage{Range: r}
	u.From, u.To = r.bounds(now)
	n := int(u.To.Sub(u.From) / r.Step)
	u.Buckets, u.Series = make([]time.Time, n), make([]Summary, n)
	for i := range u.Buckets {
		u.Buckets[i] = u.From.Add(time.Duration(i) * r.Step)
	}
	// Two queries at once: the series, bucketed, and every breakdown from
	// one pass summing the whole range per key combination.
	var rows, combos []controlplane.UsageRow
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) {
		rows, err = st.Usage(gctx, controlplane.UsageQuery{OrgID: orgID, From: u.From, To: u.To, Step: r.Step, GroupBy: []controlplane.Dimension{controlplane.DimCacheStatus}})
		return err
	})
	g.Go(func() (err error) {
		combos, err = st.Usage(gctx, controlplane.UsageQuery{OrgID: orgID, From: u.From, To: u.To, Step: r.Step, Whole: true,
			GroupBy: []controlplane.Dimension{controlplane.DimModel, controlplane.DimProvider, controlplane.DimWorkspace, controlplane.DimKeyRef, controlplane.DimCacheStatus}})
		return err
	})
	var budgets []controlplane.BudgetUse
	g.Go(func() (err error) {
		budgets, err = st.BudgetUses(gctx, orgID)
		return err
	})
	var mems []wire.MemoryUse
	var audit []wire.AuditCount
	g.Go(func() (err error) {
		mems, err = st.MemoryUses(gctx, orgID, u.From.Truncate(time.Hour), u.To)
		return err
	})
	g.Go(func() (err error) {
		audit, err = st.AuditCounts(gctx, orgID, u.From.Truncate(time.Hour), u.To)
		return err
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	u.Memories, u.Audit = byWorkspace(mems, audit)
	for _, b := range budgets {
		share := 0.0
		if b.CapNanoUSD > 0 {
			share = min(float64(b.SpentNanoUSD)/float64(b.CapNanoUSD), 1)
		}
		u.Budgets = append(u.Budgets, BudgetRow{BudgetUse: b, Share: share})
	}
	for i := range rows {
		k := int(rows[i].Time.Sub(u.From) / r.Step)
		if k < 0 || k >= n {
			continue // the store answers [From, To): cannot happen
		}
		u.Series[k].add(&rows[i])
		u.Total.add(&rows[i])
	}
	for _, bd := range breakdownDims {
		byName := map[string]*Summary{}
		for i := range combos {
			name := combos[i].Key[bd.dim]
			s, ok := byName[name]
			if !ok {
				s = &Summary{}
				byName[name] = s
			}
			s.add(&combos[i])
		}
		b := Breakdown{Dim: bd.dim, Title: bd.title, Refusals: bd.dim == controlplane.DimKeyRef}
		for name, s := range byName {
			b.Rows = append(b.Rows, BreakdownRow{Name: name, Summary: *s})
		}
		sort.Slice(b.Rows, func(i, j int) bool {
			if b.Rows[i].Requests != b.Rows[j].Requests {
				return b.Rows[i].Requests > b.Rows[j].Requests
			}
			return b.Rows[i].Name < b.Rows[j].Name
		})
		if len(b.Rows) > maxBreakdownRows {
			other := BreakdownRow{Name: "(other)"}
			for _, r := range b.Rows[maxBreakdownRows-1:] {
				other.Summary.merge(&r.Summary)
			}
			b.Rows = append(b.Rows[:maxBreakdownRows-1], other)
		}
		for i := range b.Rows {
			if u.Total.Requests > 0 {
				b.Rows[i].Share = float64(b.Rows[i].Requests) / float64(u.Total.Requests)
			}
		}
		u.Breakdowns = append(u.Breakdowns, b)
	}
	return u, nil
}

// byWorkspace groups memory uses and audit counts, which the store
// orders by workspace.
func byWorkspace(mems []wire.MemoryUse, audit []wire.AuditCount) ([]WorkspaceMemories, []WorkspaceAudit) {
	var ms []WorkspaceMemories
	for _, m := range mems {
		if len(ms) == 0 || ms[len(ms)-1].Workspace != m.Workspace {
			ms = append(ms, WorkspaceMemories{Workspace: m.Workspace})
		}
		ms[len(ms)-1].Uses = append(ms[len(ms)-1].Uses, m)
	}
	var as []WorkspaceAudit
	for _, a := range audit {
		if len(as) == 0 || as[len(as)-1].Workspace != a.Workspace {
			as = append(as, WorkspaceAudit{Workspace: a.Workspace})
		}
		w := &as[len(as)-1]
		switch a.Level {
		case "none":
			w.None += a.Records
		case "hash":
			w.Hash += a.Records
		case "full":
			w.Full += a.Records
		}
	}
	return ms, as
}

func (s *Summary) merge(o *Summary) {
	s.Totals.Add(&o.Totals)
	s.Hits += o.Hits
	s.Misses += o.Misses
}

type overviewData struct {
	*Usage
	Ranges []timeRange
	Charts []chart
}

type chart struct {
	ID, Title, Sub string
	SVG            template.HTML
	Legend         []legendItem
}

func (s *Server) overviewPage(c echo.Context) error {
	u, err := Overview(c.Request().Context(), s.store, actor(c).OrgID, rangeByKey(c.QueryParam("range")), s.now())
	if err != nil {
		return err
	}
	d := s.base(c, "Overview")
	d.Page = overviewData{Usage: u, Ranges: Ranges, Charts: charts(u)}
	return s.render(c, http.StatusOK, "overview", d)
}
