package coalesce_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/persiv/codex/edge/coalesce"
)

func TestFollowersSeeEventsAsTheyArrive(t *testing.T) {
	var g coalesce.Group
	f, leader := g.Join("org\x00fp")
	if !leader {
		t.Fatal("first joiner is not the leader")
	}
	const n = 5
	var wg sync.WaitGroup
	got := make([]int, n)
	for i := range n {
		ff, lead := g.Join("org\x00fp")
		if lead || ff != f {
			t.Fatal("second joiner leads")
		}
		wg.Go(func() {
			defer ff.Release()
			v := ff.Snapshot()
			for !v.Done {
				var err error
				if v, err = ff.Wait(context.Background(), v); err != nil {
					t.Error(err)
					return
				}
			}
			got[i] = v.Entry.NumEvents()
		})
	}
	if other, lead := g.Join("org2\x00fp"); !lead || other == f {
		t.Fatal("another key joined the flight")
	}
	f.Start(200, "text/event-stream", true)
	for range 3 {
		f.AddEvent([]byte("data: x\n\n"), false)
	}
	f.Finish(nil, nil)
	wg.Wait()
	for i, n := range got {
		if n != 3 {
			t.Fatalf("follower %d saw %d events", i, n)
		}
	}
}

// TestCancelOnlyWhenAllLeft: the shared call is cancelled when the last
// participant leaves, not before.
func TestCancelOnlyWhenAllLeft(t *testing.T) {
	var g coalesce.Group
	f, _ := g.Join("k")
	ctx, cancel := context.WithCancel(context.Background())
	f.SetCancel(cancel)
	follower, _ := g.Join("k")
	f.Release() // the leader's client left
	if ctx.Err() != nil {
		t.Fatal("cancelled while a follower remains")
	}
	follower.Release()
	if ctx.Err() == nil {
		t.Fatal("not cancelled when everyone left")
	}
	late, lead := g.Join("k")
	if lead || late != f {
		t.Fatal("the flight stopped being joinable before its leader ended it")
	}
	f.Fail(coalesce.ErrRetry)
	if v := late.Snapshot(); !v.Done || !errors.Is(v.Err, coalesce.ErrRetry) {
		t.Fatalf("late joiner of a cancelled flight: %+v", v)
	}
	if _, lead := g.Join("k"); !lead {
		t.Fatal("an ended flight took a new follower")
	}
}

func TestFailWakesFollowers(t *testing.T) {
	var g coalesce.Group
	f, _ := g.Join("k")
	ff, _ := g.Join("k")
	done := make(chan error)
	go func() {
		v := ff.Snapshot()
		for !v.Done {
			v, _ = ff.Wait(context.Background(), v)
		}
		done <- v.Err
	}()
	f.Fail(coalesce.ErrRetry)
	select {
	case err := <-done:
		if !errors.Is(err, coalesce.ErrRetry) {
			t.Fatalf("follower got %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("follower left hanging")
	}
	if g.Len() != 0 {
		t.Fatal("failed flight still joinable")
	}
}

func TestWaitHonoursContext(t *testing.T) {
	var g coalesce.Group
	f, _ := g.Join("k")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := f.Wait(ctx, f.Snapshot()); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait: %v", err)
	}
}

func TestLeadReplacesForNewFollowers(t *testing.T) {
	var g coalesce.Group
	old, leader := g.Join("k")
	if !leader {
		t.Fatal("first Join did not lead")
	}
	fresh := g.Lead("k")
	if fresh == old {
		t.Fatal("Lead joined the flight in progress")
	}
	if f, leader := g.Join("k"); leader || f != fresh {
		t.Fatal("a later Join did not follow the newest leader")
	}
	// The old flight ending must not drop the new one.
	g.Forget(old)
	if f, leader := g.Join("k"); leader || f != fresh {
		t.Fatal("forgetting the replaced flight dropped the new one")
	}
	g.Forget(fresh)
	if g.Len() != 0 {
		t.Fatalf("%d flights left", g.Len())
	}
}
