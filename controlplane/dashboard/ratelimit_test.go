package dashboard

import (
	"context"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	for _, tc := range []struct {
		name  string
		every time.Duration
		burst int
	}{
		{"per email", time.Minute / LoginsPerEmail, LoginsPerEmail},
		{"per address", time.Minute / LoginsPerAddress, LoginAddressBurst},
		{"one at a time", time.Second, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLimiter(tc.every, tc.burst)
			now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			for i := range tc.burst {
				if !l.allow("a", now) {
					t.Fatalf("attempt %d of a burst of %d refused", i+1, tc.burst)
				}
			}
			if l.allow("a", now) {
				t.Fatal("an attempt beyond the burst allowed")
			}
			if !l.allow("b", now) {
				t.Fatal("another key shares the bucket")
			}
			if !l.allow("a", now.Add(tc.every)) || l.allow("a", now.Add(tc.every)) {
				t.Fatal("the bucket does not refill one token per interval")
			}
			// Idle buckets are forgotten once full again: a flood of keys
			// does not stay in memory.
			later := now.Add(time.Duration(tc.burst)*tc.every + 2*time.Minute)
			l.allow("c", later)
			if len(l.buckets) != 1 {
				t.Fatalf("%d buckets kept after the sweep, want 1", len(l.buckets))
			}
		})
	}
}

func TestGate(t *testing.T) {
	ctx := context.Background()
	g := newGate(2, time.Millisecond)
	if first, second := g.enter(ctx), g.enter(ctx); !first || !second {
		t.Fatal("a free slot refused")
	}
	// Full: a request waits no longer than the gate's wait.
	if g.enter(ctx) {
		t.Fatal("a third hasher let in through a gate of two")
	}
	// A slot that frees goes to a waiter.
	g.wait = time.Hour
	got := make(chan bool)
	go func() { got <- g.enter(ctx) }()
	g.leave()
	if !<-got {
		t.Fatal("a waiter did not get the freed slot")
	}
	// A request whose client went away stops waiting.
	cctx, cancel := context.WithCancel(ctx)
	go func() { got <- g.enter(cctx) }()
	cancel()
	if <-got {
		t.Fatal("a cancelled request got a slot")
	}
	// Refusals took no slot: both come free.
	g.leave()
	g.leave()
	g.wait = time.Millisecond
	if first, second, third := g.enter(ctx), g.enter(ctx), g.enter(ctx); !first || !second || third {
		t.Fatal("slots leaked")
	}
}
