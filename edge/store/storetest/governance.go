package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/persiv/codex/edge"
)

func governanceTests() []struct {
	name string
	fn   func(t *testing.T, s edge.Store)
} {
	return []struct {
		name string
		fn   func(t *testing.T, s edge.Store)
	}{
		{"Limits", testLimits},
		{"LimitsInvalid", testLimitsInvalid},
		{"Budgets", testBudgets},
		{"BudgetsInvalid", testBudgetsInvalid},
		{"GovernanceScopedByOrg", testGovernanceScopedByOrg},
		{"GovernanceChanges", testGovernanceChanges},
		{"Spend", testSpend},
		{"SpendConcurrent", testSpendConcurrent},
	}
}

func testLimits(t *testing.T, s edge.Store) {
	ctx := t.Context()
	o := newOrg(t, s)
	k := newKey(t, s, o.ID)
	at := now()
	set := []edge.Limit{
		{OrgID: o.ID, KeyID: k.ID, RPM: 5, UpdatedAt: at},
		{OrgID: o.ID, RPM: 100, TPM: 20000, UpdatedAt: at},
	}
	for _, l := range set {
		if err := s.SetLimit(ctx, l); err != nil {
			t.Fatalf("SetLimit(%+v): %v", l, err)
		}
	}
	got, err := s.Limits(ctx, o.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := []edge.Limit{set[1], set[0]} // the org's first
	if !sameLimits(got, want) {
		t.Fatalf("Limits = %+v, want %+v", got, want)
	}
	// Replace, then remove.
	if err := s.SetLimit(ctx, edge.Limit{OrgID: o.ID, KeyID: k.ID, TPM: 7, UpdatedAt: at}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetLimit(ctx, edge.Limit{OrgID: o.ID}); err != nil {
		t.Fatalf("removing the org's limit: %v", err)
	}
	got, _ = s.Limits(ctx, o.ID)
	if !sameLimits(got, []edge.Limit{{OrgID: o.ID, KeyID: k.ID, TPM: 7, UpdatedAt: at}}) {
		t.Fatalf("after replace and remove: %+v", got)
	}
	// Removing what is not there is no error.
	if err := s.SetLimit(ctx, edge.Limit{OrgID: o.ID}); err != nil {
		t.Fatalf("removing again: %v", err)
	}
}

func sameLimits(a, b []edge.Limit) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i] //nolint:gosec // G602: len(a) == len(b) was checked above
		if !x.UpdatedAt.Equal(y.UpdatedAt) {
			return false
		}
		x.UpdatedAt, y.UpdatedAt = time.Time{}, time.Time{}
		if x != y {
			return false
		}
	}
	return true
}

func testLimitsInvalid(t *testing.T, s edge.Store) {
	ctx := t.Context()
	o := newOrg(t, s)
	for _, l := range []edge.Limit{{}, {OrgID: o.ID, RPM: -1}, {OrgID: o.ID, TPM: edge.MaxLimit + 1}} {
		wantErr(t, fmt.Sprintf("SetLimit(%+v)", l), s.SetLimit(ctx, l), edge.ErrInvalid)
	}
	wantErr(t, "SetLimit of an unknown org", s.SetLimit(ctx, edge.Limit{OrgID: randomID("org_"), RPM: 1}), edge.ErrNotFound)
	wantErr(t, "SetLimit of an unknown key", s.SetLimit(ctx, edge.Limit{OrgID: o.ID, KeyID: randomID("key_"), RPM: 1}), edge.ErrNotFound)
}

func testBudgets(t *testing.T, s edge.Store) {
	ctx := t.Context()
	o := newOrg(t, s)
	k := newKey(t, s, o.ID)
	at := now()
	set := []edge.Budget{
		{OrgID: o.ID, KeyID: k.ID, Period: edge.Month, CapNanoUSD: 3e9, UpdatedAt: at},
		{OrgID: o.ID, Period: edge.Month, CapNanoUSD: 100e9, UpdatedAt: at},
		{OrgID: o.ID, Period: edge.Day, CapNanoUSD: 10e9, UpdatedAt: at},
	}
	for _, b := range set {
		if err := s.SetBudget(ctx, b); err != nil {
			t.Fatalf("SetBudget(%+v): %v", b, err)
		}
	}
	got, err := s.Budgets(ctx, o.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := []edge.Budget{set[2], set[1], set[0]}
	if !sameBudgets(got, want) {
		t.Fatalf("Budgets = %+v, want %+v", got, want)
	}
	// A zero cap removes that period's budget only.
	if err := s.SetBudget(ctx, edge.Budget{OrgID: o.ID, Period: edge.Day}); err != nil {
		t.Fatal(err)
	}
	set[0].CapNanoUSD = 4e9
	if err := s.SetBudget(ctx, set[0]); err != nil {
		t.Fatal(err)
	}
	got, _ = s.Budgets(ctx, o.ID)
	if !sameBudgets(got, []edge.Budget{set[1], set[0]}) {
		t.Fatalf("after remove and replace: %+v", got)
	}
}

func sameBudgets(a, b []edge.Budget) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if !x.UpdatedAt.Equal(y.UpdatedAt) {
			return false
		}
		x.UpdatedAt, y.UpdatedAt = time.Time{}, time.Time{}
		if x != y {
			return false
		}
	}
	return true
}

func testBudgetsInvalid(t *testing.T, s edge.Store) {
	ctx := t.Context()
	o := newOrg(t, s)
	for _, b := range []edge.Budget{
		{OrgID: o.ID, CapNanoUSD: 1},
		{OrgID: o.ID, Period: "week", CapNanoUSD: 1},
		{OrgID: o.ID, Period: edge.Day, CapNanoUSD: -1},
		{Period: edge.Day, CapNanoUSD: 1},
	} {
		wantErr(t, fmt.Sprintf("SetBudget(%+v)", b), s.SetBudget(ctx, b), edge.ErrInvalid)
	}
	wantErr(t, "SetBudget of an unknown key", s.SetBudget(ctx, edge.Budget{OrgID: o.ID, KeyID: randomID("key_"), Period: edge.Day, CapNanoUSD: 1}), edge.ErrNotFound)
}

// testGovernanceScopedByOrg: an org sees only its own settings and spend,
// and cannot set them on another org's key.
func testGovernanceScopedByOrg(t *testing.T, s edge.Store) {
	ctx := t.Context()
	a, b := newOrg(t, s), newOrg(t, s)
	kb := newKey(t, s, b.ID)
	if err := s.SetLimit(ctx, edge.Limit{OrgID: b.ID, KeyID: kb.ID, RPM: 1}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetBudget(ctx, edge.Budget{OrgID: b.ID, Period: edge.Day, CapNanoUSD: 1}); err != nil {
		t.Fatal(err)
	}
	start := edge.Day.Start(time.Now())
	if err := s.AddSpend(ctx, []edge.Spend{{OrgID: b.ID, Period: edge.Day, Start: start, NanoUSD: 5}}); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "SetLimit on another org's key", s.SetLimit(ctx, edge.Limit{OrgID: a.ID, KeyID: kb.ID, RPM: 9}), edge.ErrNotFound)
	wantErr(t, "SetBudget on another org's key", s.SetBudget(ctx, edge.Budget{OrgID: a.ID, KeyID: kb.ID, Period: edge.Day, CapNanoUSD: 9}), edge.ErrNotFound)
	if ls, err := s.Limits(ctx, a.ID); err != nil || len(ls) != 0 {
		t.Errorf("Limits of the other org = %+v, %v", ls, err)
	}
	if bs, err := s.Budgets(ctx, a.ID); err != nil || len(bs) != 0 {
		t.Errorf("Budgets of the other org = %+v, %v", bs, err)
	}
	if n, err := s.Spent(ctx, a.ID, "", edge.Day, start); err != nil || n != 0 {
		t.Errorf("Spent of the other org = %d, %v", n, err)
	}
	if ls, _ := s.Limits(ctx, b.ID); len(ls) != 1 || ls[0].RPM != 1 {
		t.Errorf("the key's limit changed through another org: %+v", ls)
	}
}

func testGovernanceChanges(t *testing.T, s edge.Store) {
	ctx := t.Context()
	start := lastSeq(t, s)
	o := newOrg(t, s)
	k := newKey(t, s, o.ID)
	if err := s.SetLimit(ctx, edge.Limit{OrgID: o.ID, KeyID: k.ID, RPM: 1}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetBudget(ctx, edge.Budget{OrgID: o.ID, Period: edge.Month, CapNanoUSD: 1}); err != nil {
		t.Fatal(err)
	}
	// Spend is no setting: no change.
	if err := s.AddSpend(ctx, []edge.Spend{{OrgID: o.ID, Period: edge.Month, Start: edge.Month.Start(time.Now()), NanoUSD: 1}}); err != nil {
		t.Fatal(err)
	}
	var got []edge.Change
	for _, c := range allChanges(t, s, start) {
		if c.OrgID == o.ID && (c.Kind == "limit" || c.Kind == "budget") {
			c.Seq = 0
			got = append(got, c)
		}
	}
	want := []edge.Change{{OrgID: o.ID, Kind: "limit", Ref: k.ID}, {OrgID: o.ID, Kind: "budget", Ref: ""}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("changes = %+v, want %+v", got, want)
	}
}

func testSpend(t *testing.T, s edge.Store) {
	ctx := t.Context()
	o := newOrg(t, s)
	k := newKey(t, s, o.ID)
	day := edge.Day.Start(time.Date(2026, 3, 31, 23, 59, 0, 0, time.UTC))
	month := edge.Month.Start(day)
	add := []edge.Spend{
		{OrgID: o.ID, Period: edge.Day, Start: day, NanoUSD: 10},
		{OrgID: o.ID, KeyID: k.ID, Period: edge.Day, Start: day, NanoUSD: 3},
		{OrgID: o.ID, Period: edge.Month, Start: month, NanoUSD: 10},
		{OrgID: o.ID, Period: edge.Day, Start: day, NanoUSD: 5},
	}
	if err := s.AddSpend(ctx, add); err != nil {
		t.Fatal(err)
	}
	if err := s.AddSpend(ctx, add[:1]); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		key   string
		p     edge.Period
		start time.Time
		want  int64
	}{
		{"", edge.Day, day, 25},
		{k.ID, edge.Day, day, 3},
		{"", edge.Month, month, 10},
		{"", edge.Day, day.AddDate(0, 0, 1), 0},
		{k.ID, edge.Month, month, 0},
	} {
		if n, err := s.Spent(ctx, o.ID, c.key, c.p, c.start); err != nil || n != c.want {
			t.Errorf("Spent(%q, %s, %s) = %d, %v; want %d", c.key, c.p, c.start, n, err, c.want)
		}
	}
	for _, bad := range []edge.Spend{
		{OrgID: o.ID, Period: edge.Day, Start: day.Add(time.Hour), NanoUSD: 1},
		{OrgID: o.ID, Period: edge.Day, Start: day, NanoUSD: -1},
		{OrgID: o.ID, Period: "week", Start: day, NanoUSD: 1},
	} {
		wantErr(t, fmt.Sprintf("AddSpend(%+v)", bad), s.AddSpend(ctx, []edge.Spend{add[0], bad}), edge.ErrInvalid)
	}
	if n, _ := s.Spent(ctx, o.ID, "", edge.Day, day); n != 25 {
		t.Errorf("a refused batch added something: %d", n)
	}
}

// testSpendConcurrent: additions from several writers (instances) at once
// all count.
func testSpendConcurrent(t *testing.T, s edge.Store) {
	ctx := t.Context()
	o := newOrg(t, s)
	day := edge.Day.Start(time.Now())
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			for range 5 {
				if err := s.AddSpend(ctx, []edge.Spend{{OrgID: o.ID, Period: edge.Day, Start: day, NanoUSD: 7}}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n, err := s.Spent(ctx, o.ID, "", edge.Day, day); err != nil || n != 8*5*7 {
		t.Fatalf("Spent = %d, %v; want %d", n, err, 8*5*7)
	}
}
