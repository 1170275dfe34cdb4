package redis_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/persiv/codex/edge/apikey"
	"github.com/persiv/codex/edge/cache"
	"github.com/persiv/codex/edge/cache/redis"
	"github.com/persiv/codex/edge/internal/testutil"
)

func testURL(t *testing.T) string {
	t.Helper()
	u := testutil.RedisURL(t)
	return u
}

func TestGetSetDelete(t *testing.T) {
	b, err := redis.Open(testURL(t), redis.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	key := cache.Key(apikey.NewID("org_"), "fp")
	if _, err := b.Get(ctx, key); !errors.Is(err, cache.ErrMiss) {
		t.Fatalf("absent: %v", err)
	}
	if err := b.Set(ctx, key, []byte("sealed"), time.Second); err != nil {
		t.Fatal(err)
	}
	if v, err := b.Get(ctx, key); err != nil || !bytes.Equal(v, []byte("sealed")) {
		t.Fatalf("get: %q %v", v, err)
	}
	if ttl := b.Client().PTTL(ctx, key).Val(); ttl <= 0 || ttl > time.Second {
		t.Fatalf("ttl %s", ttl)
	}
	if err := b.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(ctx, key); !errors.Is(err, cache.ErrMiss) {
		t.Fatalf("after delete: %v", err)
	}
}

// TestDownFailsFastAndRecovers: with nothing listening, calls fail within
// the timeouts, then at once during the cool-down, and the backend tries
// again after it.
func TestDownFailsFastAndRecovers(t *testing.T) {
	testURL(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	b, err := redis.Open("redis://"+addr+"/0", redis.Options{Cooldown: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	start := time.Now()
	if _, err := b.Get(ctx, "k"); err == nil || errors.Is(err, cache.ErrMiss) {
		t.Fatalf("down: %v", err)
	}
	if _, err := b.Get(ctx, "k"); !errors.Is(err, redis.ErrUnavailable) {
		t.Fatalf("during the cool-down: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("failing took %s", d)
	}
	time.Sleep(250 * time.Millisecond)
	if _, err := b.Get(ctx, "k"); errors.Is(err, redis.ErrUnavailable) {
		t.Fatal("no new attempt after the cool-down")
	}
}
