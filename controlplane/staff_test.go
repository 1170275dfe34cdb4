package controlplane_test

import (
	"errors"
	"testing"
	"time"

	"github.com/persiv/codex/controlplane"
)

func chain(n int) []controlplane.AccessEvent {
	var out []controlplane.AccessEvent
	for i := range n {
		e := controlplane.AccessEvent{OrgID: "org_a", At: time.Date(2026, 1, 1, 0, 0, i, 5, time.UTC), Kind: controlplane.EventUse, StaffID: "stf_a", Detail: "/overview"}
		var last *controlplane.AccessEvent
		if i > 0 {
			last = &out[i-1]
		}
		e.Chain(last)
		out = append(out, e)
	}
	return out
}

// TestVerifyChain: an intact chain verifies; a changed field, a removed,
// swapped or renumbered event, or a re-hashed altered event is caught.
func TestVerifyChain(t *testing.T) {
	if err := controlplane.VerifyChain(chain(4)); err != nil {
		t.Fatalf("intact chain: %v", err)
	}
	if c := chain(1); c[0].At.Nanosecond() != 0 || c[0].Seq != 1 || c[0].Prev != [32]byte{} {
		t.Fatalf("first event = %+v: want whole seconds, number 1, no previous hash", c[0])
	}
	for name, tamper := range map[string]func(c []controlplane.AccessEvent) []controlplane.AccessEvent{
		"detail changed": func(c []controlplane.AccessEvent) []controlplane.AccessEvent { c[1].Detail = "/members"; return c },
		"staff changed":  func(c []controlplane.AccessEvent) []controlplane.AccessEvent { c[2].StaffID = "stf_b"; return c },
		"time changed": func(c []controlplane.AccessEvent) []controlplane.AccessEvent {
			c[0].At = c[0].At.Add(time.Hour)
			return c
		},
		"kind changed": func(c []controlplane.AccessEvent) []controlplane.AccessEvent {
			c[3].Kind = controlplane.EventSignIn
			return c
		},
		"event removed": func(c []controlplane.AccessEvent) []controlplane.AccessEvent { return append(c[:1], c[2:]...) },
		"last removed":  func(c []controlplane.AccessEvent) []controlplane.AccessEvent { return c[1:] },
		"swapped":       func(c []controlplane.AccessEvent) []controlplane.AccessEvent { c[1], c[2] = c[2], c[1]; return c },
		"re-hashed": func(c []controlplane.AccessEvent) []controlplane.AccessEvent {
			c[1].Detail = "/members"
			c[1].Hash = c[1].ChainHash(c[1].Prev)
			return c
		},
	} {
		if err := controlplane.VerifyChain(tamper(chain(4))); !errors.Is(err, controlplane.ErrChainBroken) {
			t.Errorf("%s: %v, want ErrChainBroken", name, err)
		}
	}
}

func TestBreakGlassDefaults(t *testing.T) {
	on, off := true, false
	for _, tc := range []struct {
		org  controlplane.Org
		want bool
	}{
		{controlplane.Org{Plan: controlplane.PlanFree}, true},
		{controlplane.Org{Plan: controlplane.PlanPro}, true},
		{controlplane.Org{Plan: controlplane.PlanEnterprise}, false},
		{controlplane.Org{Plan: controlplane.PlanEnterprise, BreakGlass: &on}, true},
		{controlplane.Org{Plan: controlplane.PlanFree, BreakGlass: &off}, false},
	} {
		if got := tc.org.BreakGlassAllowed(); got != tc.want {
			t.Errorf("%s, owner's choice %v: allowed %v, want %v", tc.org.Plan, tc.org.BreakGlass, got, tc.want)
		}
	}
}
