package main

import (
	"context"
	"math"
	"runtime/debug"
	"testing"

	"github.com/persiv/codex/edge/config"
)

func TestMemoryLimit(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	inProcess := config.Default()
	withRedis := config.Default()
	withRedis.RedisURL = "redis://127.0.0.1:6379"
	noCache := config.Default()
	noCache.CacheEnabled = false
	for _, c := range []struct {
		name     string
		cfg      config.Config
		gomemlim string
		want     int64 // 0: left alone
	}{
		{"in-process cache", inProcess, "", 32<<20 + baseMemory},
		{"redis", withRedis, "", baseMemory},
		{"cache off", noCache, "", baseMemory},
		{"GOMEMLIMIT chosen", inProcess, "1GiB", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			debug.SetMemoryLimit(math.MaxInt64)
			e := &env{ctx: context.Background(), getenv: func(k string) string {
				if k == "GOMEMLIMIT" {
					return c.gomemlim
				}
				return ""
			}}
			limit, set := e.memoryLimit(c.cfg)
			got := debug.SetMemoryLimit(-1)
			if c.want == 0 {
				if set || got != math.MaxInt64 {
					t.Fatalf("limit set to %d although GOMEMLIMIT chose one", got)
				}
				return
			}
			if !set || limit != c.want || got != c.want {
				t.Fatalf("limit %d (reported %d, set %v), want %d", got, limit, set, c.want)
			}
		})
	}
}
