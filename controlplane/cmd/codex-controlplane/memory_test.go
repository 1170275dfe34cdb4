package main

import (
	"math"
	"runtime/debug"
	"testing"

	"github.com/persiv/codex/controlplane/config"
	"github.com/persiv/codex/controlplane/password"
)

func TestMemoryLimit(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	for _, c := range []struct {
		name     string
		hashers  int
		gomemlim string
		want     int64 // 0: left alone
	}{
		{"two hashers", 2, "", baseMemory + 2*password.Memory},
		{"one hasher", 1, "", baseMemory + password.Memory},
		{"GOMEMLIMIT chosen", 2, "1GiB", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			debug.SetMemoryLimit(math.MaxInt64)
			cfg := config.Default()
			cfg.PasswordHashers = c.hashers
			limit, set := memoryLimit(cfg, envOf(map[string]string{"GOMEMLIMIT": c.gomemlim}))
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
