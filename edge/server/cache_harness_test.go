package server_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	aoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	goredis "github.com/redis/go-redis/v9"

	"github.com/persiv/codex/edge/config"
	"github.com/persiv/codex/edge/fakeprovider"
	"github.com/persiv/codex/edge/internal/testutil"
)

// testRedisURL is the Redis that `make test` starts (scripts/dev-redis.sh).
// Under CI it must be there: a missing Redis fails the test, it is never
// skipped there.
func testRedisURL(t *testing.T) string {
	t.Helper()
	u := testutil.RedisURL(t)
	return u
}

// cacheHarness is an edge with the cache on: in-process, or on the shared
// test Redis when redis is set.
func cacheHarness(t *testing.T, fo fakeprovider.Options, redis bool, mutate ...func(*config.Config)) *harness {
	t.Helper()
	var url string
	if redis {
		url = testRedisURL(t)
	}
	return newHarness(t, fo, func(c *config.Config) {
		c.CacheEnabled = true
		c.RedisURL = url
		for _, m := range mutate {
			m(c)
		}
	})
}

// forBackends runs f against the in-process cache and against Redis.
func forBackends(t *testing.T, f func(t *testing.T, redis bool)) {
	t.Run("memory", func(t *testing.T) { f(t, false) })
	t.Run("redis", func(t *testing.T) { f(t, true) })
}

// cacheLog records the x-codex-cache header of every answer an SDK
// client received.
type cacheLog struct {
	mu   sync.Mutex
	seen []string
}

func (l *cacheLog) middleware(r *http.Request, next func(*http.Request) (*http.Response, error)) (*http.Response, error) {
	resp, err := next(r)
	if resp != nil {
		l.mu.Lock()
		l.seen = append(l.seen, resp.Header.Get("x-codex-cache"))
		l.mu.Unlock()
	}
	return resp, err
}

// last returns the header of the latest answer and forgets the log.
func (l *cacheLog) last() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.seen) == 0 {
		return "(none)"
	}
	s := l.seen[len(l.seen)-1]
	l.seen = nil
	return s
}

func (h *harness) loggedClients(key string) (openai.Client, anthropic.Client, *cacheLog) {
	l := &cacheLog{}
	return h.openai(key, option.WithMiddleware(l.middleware)), h.anthropic(key, aoption.WithMiddleware(l.middleware)), l
}

// redisProc is a private redis-server with persistence on, for tests that
// stop it or read its files.
type redisProc struct {
	t    *testing.T
	bin  string
	dir  string
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

func startRedis(t *testing.T) *redisProc {
	t.Helper()
	testRedisURL(t) // same requirement as the shared server
	bin := os.Getenv("CODEX_TEST_REDIS_SERVER")
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("redis-server"); err != nil {
			t.Fatal("redis-server not found: set CODEX_TEST_REDIS_SERVER (scripts/dev-redis.sh env)")
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	r := &redisProc{t: t, bin: bin, dir: t.TempDir(), port: port}
	conf := fmt.Sprintf("bind 127.0.0.1\nport %d\ndir %s\nappendonly yes\nappendfsync always\nsave 60 1\ndbfilename dump.rdb\nrdbcompression no\n", port, r.dir)
	if err := os.WriteFile(filepath.Join(r.dir, "redis.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	r.start()
	t.Cleanup(r.stop)
	return r
}

func (r *redisProc) url() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", r.port) }

func (r *redisProc) client() *goredis.Client {
	c := goredis.NewClient(&goredis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", r.port)})
	r.t.Cleanup(func() { c.Close() })
	return c
}

func (r *redisProc) start() {
	r.t.Helper()
	r.cmd = exec.Command(r.bin, filepath.Join(r.dir, "redis.conf"))
	r.cmd.Dir = r.dir
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	r.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { cmd.Wait(); close(done) }(r.cmd, r.done)
	c := goredis.NewClient(&goredis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", r.port)})
	defer c.Close()
	testutil.Eventually(r.t, 10*time.Second, "redis-server to start", func() bool { return c.Ping(context.Background()).Err() == nil })
}

// stop kills the server (as a crash would) and waits for it to exit.
func (r *redisProc) stop() {
	if r.cmd == nil {
		return
	}
	r.cmd.Process.Kill()
	<-r.done
	r.cmd = nil
}

// persist forces an RDB save and an AOF rewrite and waits for both.
func (r *redisProc) persist(ctx context.Context) {
	r.t.Helper()
	c := r.client()
	if err := c.Save(ctx).Err(); err != nil {
		r.t.Fatal(err)
	}
	if err := c.BgRewriteAOF(ctx).Err(); err != nil {
		r.t.Fatal(err)
	}
	testutil.Eventually(r.t, 10*time.Second, "the AOF rewrite to finish", func() bool {
		info, err := c.Info(ctx, "persistence").Result()
		if err != nil {
			r.t.Fatal(err)
		}
		return strings.Contains(info, "aof_rewrite_in_progress:0") && strings.Contains(info, "aof_rewrite_scheduled:0")
	})
}
