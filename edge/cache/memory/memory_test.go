package memory_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/persiv/codex/edge/cache"
	"github.com/persiv/codex/edge/cache/memory"
)

func TestGetSetDelete(t *testing.T) {
	b, err := memory.New(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	if _, err := b.Get(ctx, "k"); !errors.Is(err, cache.ErrMiss) {
		t.Fatalf("empty: %v", err)
	}
	if err := b.Set(ctx, "k", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if v, err := b.Get(ctx, "k"); err != nil || !bytes.Equal(v, []byte("v")) {
		t.Fatalf("get: %q %v", v, err)
	}
	if err := b.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(ctx, "k"); !errors.Is(err, cache.ErrMiss) {
		t.Fatalf("after delete: %v", err)
	}
	if err := b.Set(ctx, "short", []byte("v"), 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(60 * time.Millisecond)
	if _, err := b.Get(ctx, "short"); !errors.Is(err, cache.ErrMiss) {
		t.Fatalf("after its TTL: %v", err)
	}
}

// TestBudget: the cache holds at most its budget in bytes.
func TestBudget(t *testing.T) {
	const budget = 64 << 10
	b, err := memory.New(budget)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	val := make([]byte, 1024)
	for i := range 1000 {
		if err := b.Set(ctx, fmt.Sprintf("key-%04d", i), val, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	held := 0
	for i := range 1000 {
		if _, err := b.Get(ctx, fmt.Sprintf("key-%04d", i)); err == nil {
			held++
		}
	}
	if held == 0 || held*1032 > budget {
		t.Fatalf("%d entries of ~1 KiB held under a %d-byte budget", held, budget)
	}
}

// TestMemoryBoundedByBudget: storing many entries with long lifetimes keeps
// the heap near the budget. (ristretto's own expiry index kept a map slot
// per store for the entry's whole lifetime, evicted or not.)
func TestMemoryBoundedByBudget(t *testing.T) {
	const budget = 1 << 20
	b, err := memory.New(budget)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	val := make([]byte, 64)
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	for i := range 20000 { // fill the budget first
		if err := b.Set(ctx, fmt.Sprintf("warm-%07d", i), val, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	before := heap()
	// Lifetimes spread over many hours, as stores made over hours are:
	// ristretto's index keeps a map per 5 s of expiry times.
	for i := range 300000 {
		if err := b.Set(ctx, fmt.Sprintf("key-%07d", i), val, time.Hour+time.Duration(i%50000)*5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	after := heap()
	if grew := int64(after) - int64(before); grew > 4<<20 {
		t.Fatalf("heap grew %d KiB storing 300,000 entries into a %d KiB budget", grew>>10, budget>>10)
	}
}
