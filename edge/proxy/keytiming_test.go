package proxy_test

import (
	"context"
	"fmt"
	"hash/crc32"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/apikey"
	"github.com/persiv/codex/edge/directory"
	"github.com/persiv/codex/edge/fakeprovider"
	"github.com/persiv/codex/edge/keyring"
	"github.com/persiv/codex/edge/keyring/local"
	"github.com/persiv/codex/edge/pricing"
	"github.com/persiv/codex/edge/proxy"
	"github.com/persiv/codex/edge/store/postgres/pgtest"
)

// Timing of rejected gateway keys (issue 13): how long the edge takes to
// refuse a key must not tell whether the key exists. The samples are
// keys the edge has never seen, so each one takes the whole path (store
// lookup included), as an attacker probing candidate keys would see it.

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// keyWithPrefix returns a well-formed gateway key (checksum right) that
// starts with prefix and is random after it.
func keyWithPrefix(prefix string) string {
	b := []byte(prefix)
	for len(b) < len(apikey.Prefix)+apikey.RandomLen {
		b = append(b, base62[rand.IntN(62)])
	}
	sum := crc32.ChecksumIEEE(b[len(apikey.Prefix):])
	var cs [apikey.ChecksumLen]byte
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i] = base62[sum%62]
		sum /= 62
	}
	return string(append(b, cs[:]...))
}

// welch returns Welch's t statistic of two samples.
func welch(a, b []float64) float64 {
	mean := func(x []float64) (m, v float64) {
		for _, s := range x {
			m += s
		}
		m /= float64(len(x))
		for _, s := range x {
			v += (s - m) * (s - m)
		}
		return m, v / float64(len(x)-1)
	}
	ma, va := mean(a)
	mb, vb := mean(b)
	return (ma - mb) / math.Sqrt(va/float64(len(a))+vb/float64(len(b)))
}

// TestRejectedKeyTimingLeaksNothing sends 10,000 requests with keys of
// three rejected classes in random order through the in-process handler
// over the production store (PostgreSQL), and compares each pair of
// classes' times with Welch's t-test: |t| must stay under 4.5.
//
//   - unknown: well-formed, never issued;
//   - revoked: issued, then revoked;
//   - near miss: shares its display prefix with a live key, so a lookup
//     by prefix would find that key and fail only at the secret.
//
// Without AuthRejectQuantum a revoked key is refused about 15 µs later
// than an unknown one (the store returns its row), and this test fails
// with t between 5 and 20.
func TestRejectedKeyTimingLeaksNothing(t *testing.T) {
	const (
		perClass = 3334
		// quantum is the edge's AuthRejectQuantum here. A few senders at
		// once keep the run to seconds (each refusal waits about a
		// millisecond) while the machine stays quiet enough for a 15 µs
		// difference to show were the quantum gone.
		quantum = time.Millisecond
		senders = 3
	)
	ctx := context.Background()
	owner, app := pgtest.FreshDB(t)
	db := pgtest.Open(t, app)
	org := edge.Org{ID: apikey.NewID("org_"), Name: "timing"}
	if err := db.CreateOrg(ctx, org); err != nil {
		t.Fatal(err)
	}
	if err := db.SetProvider(ctx, edge.ProviderConfig{OrgID: org.ID, Provider: edge.OpenAI, BaseURL: "http://fake", AllowInsecureHTTP: true, APIKeyEnv: "K"}); err != nil {
		t.Fatal(err)
	}
	live, _ := apikey.Generate()
	err := db.CreateKey(ctx, edge.APIKey{ID: apikey.NewID("key_"), OrgID: org.ID, Name: "live", Prefix: apikey.DisplayPrefix(live), Hash: apikey.Hash(live)})
	if err != nil {
		t.Fatal(err)
	}

	type sample struct {
		class int
		key   string
	}
	classes := []string{"unknown", "revoked", "near miss"}
	samples := make([]sample, 0, 3*perClass)
	var ids, prefixes []string
	var hashes [][]byte
	for range perClass {
		revoked, _ := apikey.Generate()
		h := apikey.Hash(revoked)
		ids, prefixes, hashes = append(ids, apikey.NewID("key_")), append(prefixes, apikey.DisplayPrefix(revoked)), append(hashes, h[:])
		samples = append(samples,
			sample{0, keyWithPrefix(apikey.Prefix)},
			sample{1, revoked.Reveal()},
			sample{2, keyWithPrefix(apikey.DisplayPrefix(live))})
	}
	rand.Shuffle(len(samples), func(i, j int) { samples[i], samples[j] = samples[j], samples[i] })
	// The revoked keys go in with one statement, as the owner role in the
	// org's row-level security scope: one CreateKey each would take
	// seconds.
	conn, err := pgx.Connect(ctx, owner)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT set_config('app.org_id', $1, true)`, org.ID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO api_keys (id, org_id, name, prefix, hash, state, created_at, revoked_at)
			SELECT id, $1, 'revoked', prefix, hash, 'revoked', now(), now()
			FROM unnest($2::text[], $3::text[], $4::bytea[]) AS u(id, prefix, hash)`, org.ID, ids, prefixes, hashes)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}

	master, _, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	kr, err := keyring.New(keyring.Options{Store: db, Master: master})
	if err != nil {
		t.Fatal(err)
	}
	dir := directory.New(db, directory.Options{Keys: kr, Getenv: func(string) string { return "sk-fake" }})
	if err := dir.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	prices, _ := pricing.Load(nil)
	// The failure limiter is the subject of another test; here every
	// sample must reach the lookup.
	px := proxy.New(dir, discard{}, prices, proxy.Options{
		Transport: inProcess{fakeprovider.New(fakeprovider.Options{NoRecord: true})}, AuthFailureLimit: math.MaxInt32, AuthRejectQuantum: quantum,
	})
	e := echo.New()
	px.Register(e)

	send := func(key string) (int, time.Duration) {
		req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(`{"model":"gpt-4o-mini","messages":[]}`))
		req.Header.Set("Authorization", "Bearer "+key)
		rec := httptest.NewRecorder()
		start := time.Now()
		e.ServeHTTP(rec, req)
		return rec.Code, time.Since(start)
	}
	if code, _ := send(live.Reveal()); code != 200 {
		t.Fatalf("live key: status %d", code)
	}
	for range 50 { // warm up
		send(keyWithPrefix(apikey.Prefix))
	}
	// Concurrent senders keep the run short: each refusal waits for the
	// quantum. The classes stay interleaved at random.
	took := make([]time.Duration, len(samples))
	next := make(chan int)
	var wg sync.WaitGroup
	var bad atomic.Value
	for range senders {
		wg.Go(func() {
			for i := range next {
				code, d := send(samples[i].key)
				if code != 401 {
					bad.Store(fmt.Sprintf("%s key: status %d, want 401", classes[samples[i].class], code))
				}
				took[i] = d
			}
		})
	}
	for i := range samples {
		next <- i
	}
	close(next)
	wg.Wait()
	if msg := bad.Load(); msg != nil {
		t.Fatal(msg)
	}
	times := make([][]float64, len(classes))
	for i, s := range samples {
		times[s.class] = append(times[s.class], float64(took[i].Nanoseconds()))
	}
	// Pauses (GC, the scheduler, the shared machine) put a long tail on
	// every class alike; it only adds noise, so samples above the pooled
	// 90th percentile are left out, the same cut for every class.
	var pooled []float64
	for _, c := range times {
		pooled = append(pooled, c...)
	}
	slices.Sort(pooled)
	cut := pooled[len(pooled)*9/10]
	for i, c := range times {
		times[i] = slices.DeleteFunc(c, func(v float64) bool { return v > cut })
	}
	for i := range classes {
		for j := i + 1; j < len(classes); j++ {
			tt := welch(times[i], times[j])
			t.Logf("%s vs %s: t = %.2f (means %.1f µs, %.1f µs)", classes[i], classes[j], tt, avg(times[i])/1e3, avg(times[j])/1e3)
			if math.Abs(tt) >= 4.5 {
				t.Errorf("%s and %s keys are told apart by time: Welch t = %.2f", classes[i], classes[j], tt)
			}
		}
	}
}

func avg(x []float64) float64 {
	var s float64
	for _, v := range x {
		s += v
	}
	return s / float64(len(x))
}
