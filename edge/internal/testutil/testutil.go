// Package testutil holds the helpers that the edge's tests share.
package testutil

import (
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// pollEvery is how often Eventually checks its condition.
const pollEvery = 5 * time.Millisecond

// Eventually polls cond until it holds and returns how long that took. It
// fails the test, naming what it waited for, once within has passed. The
// deadline only ends a test that would hang: it asserts no timing, unless
// the caller checks the duration returned.
func Eventually(tb testing.TB, within time.Duration, what string, cond func() bool) time.Duration {
	tb.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			tb.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(pollEvery)
	}
	return time.Since(start)
}

// VerifyTestMain runs a package's tests, then fails them when a goroutine
// outlives them (go.uber.org/goleak), for packages that start goroutines.
// Call it from TestMain.
func VerifyTestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// hashicorp/golang-lru/v2's expirable.LRU (the keyring's DEK
		// cache, the directory's negative cache) starts a janitor
		// goroutine it never stops: v2 has no Close (its source says so).
		// One per cache, for the life of the process.
		goleak.IgnoreTopFunction("github.com/hashicorp/golang-lru/v2/expirable.NewLRU[...].func1"),
	)
}

// RedisURL is the URL of the test Redis (scripts/dev-redis.sh, which
// scripts/test.sh starts). Without one, a test under CI (CI set) fails and
// any other run skips it, saying how to start one.
func RedisURL(tb testing.TB) string {
	tb.Helper()
	u := os.Getenv("CODEX_TEST_REDIS_URL")
	if u == "" {
		if os.Getenv("CI") != "" {
			tb.Fatal("CODEX_TEST_REDIS_URL is not set: run eval \"$(scripts/dev-redis.sh start)\" before the tests")
		}
		tb.Skip("CODEX_TEST_REDIS_URL not set (eval \"$(scripts/dev-redis.sh start)\"); required when CI=true")
	}
	return u
}
