package memory_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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
	b.Set(ctx, "k", []byte("v"), time.Minute)
	if v, err := b.Get(ctx, "k"); err != nil || !bytes.Equal(v, []byte("v")) {
		t.Fatalf("get: %q %v", v, err)
	}
	b.Delete(ctx, "k")
	if _, err := b.Get(ctx, "k"); !errors.Is(err, cache.ErrMiss) {
		t.Fatalf("after delete: %v", err)
	}
	b.Set(ctx, "short", []byte("v"), 50*time.Millisecond)
	time.Sleep(1100 * time.Millisecond)
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
		b.Set(ctx, fmt.Sprintf("key-%04d", i), val, time.Hour)
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
