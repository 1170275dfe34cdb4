package server_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/budget"
	"github.com/persiv/codex/edge/config"
	"github.com/persiv/codex/edge/fakeprovider"
	"github.com/persiv/codex/edge/internal/testutil"
	"github.com/persiv/codex/edge/pricing"
	"github.com/persiv/codex/edge/provider/anthropic"
	"github.com/persiv/codex/edge/server"
	"github.com/persiv/codex/edge/store/postgres/pgtest"
)

// budgetBody is an Anthropic Messages request whose worst case the test
// computes as the edge does: the body goes upstream unchanged.
func budgetBody(maxTokens int, stream bool) string {
	return fmt.Sprintf(`{"model":"claude-haiku-4-5","max_tokens":%d,"stream":%t,"messages":[{"role":"user","content":"how much does this cost"}]}`, maxTokens, stream)
}

func worstCase(t *testing.T, body string) int64 {
	t.Helper()
	tbl, err := pricing.Load(nil)
	if err != nil {
		t.Fatal(err)
	}
	var maxTokens int64
	if _, err := fmt.Sscanf(body[strings.Index(body, `"max_tokens":`)+len(`"max_tokens":`):], "%d", &maxTokens); err != nil {
		t.Fatal(err)
	}
	n, ok := tbl.WorstCase(anthropic.Format{}, anthropic.Messages, "claude-haiku-4-5", (int64(len(body))+2)/3, maxTokens)
	if !ok {
		t.Fatal("claude-haiku-4-5 is not priced")
	}
	return n
}

// postMessages sends body to base's Messages route, reads the whole answer
// and returns its status and body.
func postMessages(ctx context.Context, base, key, body string) (int, string, error) {
	req, _ := http.NewRequestWithContext(ctx, "POST", base+"/v1/messages", strings.NewReader(body))
	req.Header.Set("x-api-key", key)
	req.Header.Set("anthropic-version", "2023-06-01")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func bucketOf(b edge.Budget) budget.Bucket {
	start := b.Period.Start(time.Now())
	return budget.Bucket{OrgID: b.OrgID, KeyID: b.KeyID, Period: b.Period, Start: start, Cap: b.CapNanoUSD}
}

func ledgerUse(t *testing.T, srv *server.Server, b edge.Budget) (spent, reserved int64) {
	t.Helper()
	s, r, err := srv.Ledger().Use(context.Background(), bucketOf(b))
	if err != nil {
		t.Fatal(err)
	}
	return s, r
}

// settledUse is ledgerUse once no reservation is left: a JSON answer
// reaches the client before its request is settled (the stages' work
// after the answer no longer delays it).
func settledUse(t *testing.T, srv *server.Server, b edge.Budget) (spent, reserved int64) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, "the requests answered to be settled", func() bool {
		spent, reserved = ledgerUse(t, srv, b)
		return reserved == 0
	})
	return spent, reserved
}

// TestBudgetTwoEdgesConcurrent: a cap that fits exactly M requests by
// reservation, 3×M concurrent streams through two edges sharing Redis
// and Postgres: at most M are answered, the settled spend stays within
// the cap, and nothing stays reserved once all have ended. The fake
// provider holds every admitted stream until the refusals are in, so
// that no settlement frees room while requests are still being decided.
func TestBudgetTwoEdgesConcurrent(t *testing.T) {
	const m = 4
	_, app := pgtest.FreshDB(t)
	rp := startRedis(t)
	var refused atomic.Int64
	open := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(open) }) }
	time.AfterFunc(8*time.Second, release) // if more than M were admitted, the test still ends
	f := newPGFleetFake(t, app, fakeprovider.Options{Gate: func(ctx context.Context, chunk int) error {
		select {
		case <-open:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}})
	mut := func(c *config.Config) {
		c.RedisURL = rp.url()
		c.CacheEnabled = false
		c.BudgetFlush = 20 * time.Millisecond
	}
	e1, e2 := f.start(mut), f.start(mut)
	org := f.addOrg("acme")
	keyID, key := f.addKey(org)
	body := budgetBody(400, true)
	worst := worstCase(t, body)
	b := edge.Budget{OrgID: org, KeyID: keyID, Period: edge.Day, CapNanoUSD: m * worst}
	if err := f.admin.SetBudget(context.Background(), b); err != nil {
		t.Fatal(err)
	}

	ctx := ctxT(t)
	var (
		wg       sync.WaitGroup
		answered atomic.Int64
	)
	for i := range 3 * m {
		base := e1.base
		if i%2 == 1 {
			base = e2.base
		}
		wg.Go(func() {
			st, resp, err := postMessages(ctx, base, key, body)
			switch {
			case err != nil:
				t.Error(err)
			case st == 200 && strings.Contains(resp, "message_stop"):
				answered.Add(1)
			case st == 429 && strings.Contains(resp, `"rate_limit_error"`):
				if refused.Add(1) == 2*m {
					release()
				}
			default:
				t.Errorf("status %d: %s", st, resp)
			}
		})
	}
	wg.Wait()
	if answered.Load() != m || refused.Load() != 2*m {
		t.Fatalf("%d answered and %d refused of %d; want %d and %d", answered.Load(), refused.Load(), 3*m, m, 2*m)
	}
	for _, e := range []*pgEdge{e1, e2} {
		spent, reserved := settledUse(t, e.srv, b)
		if spent > b.CapNanoUSD || spent <= 0 || reserved != 0 {
			t.Fatalf("after all ended: spent %d (cap %d), reserved %d", spent, b.CapNanoUSD, reserved)
		}
	}
	spent, _ := ledgerUse(t, e1.srv, b)
	// The store gets the same settled spend.
	testutil.Eventually(t, 10*time.Second, "the spend to reach the store", func() bool {
		n, err := f.admin.Spent(context.Background(), org, keyID, edge.Day, time.Now())
		return err == nil && n == spent
	})
}

// TestBudgetRefusals: in process, a request whose worst case does not fit
// is refused in each provider's shape before any provider call; an
// unpriced model is refused unless CODEX_BUDGET_UNPRICED=allow; a cache
// hit reserves nothing; a stream settles at its end, and one its client
// abandons settles too, leaving nothing reserved.
func TestBudgetRefusals(t *testing.T) {
	h := newHarness(t, fakeprovider.Options{}, nil)
	tn := h.addOrg("acme")
	body := budgetBody(300, false)
	worst := worstCase(t, body)
	b := edge.Budget{OrgID: tn.orgID, KeyID: tn.keyID, Period: edge.Month, CapNanoUSD: worst}
	if err := h.store.SetBudget(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	var st int
	var resp string
	testutil.Eventually(t, 10*time.Second, "the budget to apply", func() bool {
		// Not admitted while the worst case of a larger request passes the cap.
		st, resp, _ = postMessages(ctx, h.base, tn.key, budgetBody(301, false))
		return st == 429
	})
	if !strings.Contains(resp, `"rate_limit_error"`) || h.fake.Count(fakeprovider.PathMessages) != 0 {
		t.Fatalf("refusal %d %s; provider calls %d", st, resp, h.fake.Count(fakeprovider.PathMessages))
	}
	// Exactly the cap: admitted, and settled to far less.
	if st, resp, _ := postMessages(ctx, h.base, tn.key, body); st != 200 {
		t.Fatalf("a request whose worst case is the cap: %d %s", st, resp)
	}
	spent, reserved := settledUse(t, h.srv, b)
	if spent <= 0 || spent >= worst || reserved != 0 {
		t.Fatalf("after one answer: spent %d reserved %d (worst %d)", spent, reserved, worst)
	}
	// The same request again is a cache hit: served with no room left.
	if st, _, _ := postMessages(ctx, h.base, tn.key, body); st != 200 {
		t.Fatalf("cache hit with the budget used: %d", st)
	}
	if s2, _ := ledgerUse(t, h.srv, b); s2 != spent {
		t.Fatalf("a cache hit changed spent from %d to %d", spent, s2)
	}
	// OpenAI's shape: insufficient_quota / budget_exceeded, Retry-After.
	resp2, err := chatOnce(ctx, h.openai(tn.key), "a fresh question")
	var oe *openai.Error
	if !errors.As(err, &oe) || oe.StatusCode != 429 || oe.Type != "insufficient_quota" || oe.Code != "budget_exceeded" {
		t.Fatalf("OpenAI refusal: %v", err)
	}
	if ra, _ := strconv.Atoi(resp2.Header.Get("Retry-After")); ra < 1 {
		t.Errorf("Retry-After %q", resp2.Header.Get("Retry-After"))
	}
	if m := metricsText(t, h); !strings.Contains(m, `codex_edge_limit_refusals_total{reason="budget"}`) {
		t.Error("budget refusals not counted")
	}
	// What costs nothing still works with the budget spent past its cap
	// (a cap lowered below what was spent).
	b.CapNanoUSD = 1
	setBudgetNow(t, h, b)
	oc := h.openai(tn.key)
	if _, err := oc.Models.List(ctx); err != nil {
		t.Fatalf("listing models with the budget used up: %v", err)
	}

	b.CapNanoUSD = worst * 10
	setBudgetNow(t, h, b)

	// Unpriced models.
	unpriced := `{"model":"claude-unpriced-9","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`
	if st, resp, _ := postMessages(ctx, h.base, tn.key, unpriced); st != 400 || !strings.Contains(resp, `"invalid_request_error"`) || !strings.Contains(resp, "no price") {
		t.Fatalf("unpriced model under a budget: %d %s", st, resp)
	}
	h.cfg.BudgetUnpriced = "allow"
	h.restart(nil)
	if st, resp, _ := postMessages(ctx, h.base, tn.key, unpriced); st != 200 {
		t.Fatalf("unpriced model with CODEX_BUDGET_UNPRICED=allow: %d %s", st, resp)
	}
}

// TestBudgetStreams: a stream settles when it ends; a stream its client
// abandons half-way settles too, and nothing stays reserved.
func TestBudgetStreams(t *testing.T) {
	gate := make(chan struct{})
	h := newHarness(t, fakeprovider.Options{Gate: func(ctx context.Context, chunk int) error {
		if chunk < 3 {
			return nil
		}
		select {
		case <-gate:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}}, func(c *config.Config) { c.CacheEnabled = false })
	tn := h.addOrg("acme")
	b := edge.Budget{OrgID: tn.orgID, Period: edge.Day, CapNanoUSD: 1e9}
	if err := h.store.SetBudget(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	body := budgetBody(200, true)
	worst := worstCase(t, body)
	// Abandoned: read the first events, then hang up.
	actx, cancel := context.WithCancel(ctx)
	req, _ := http.NewRequestWithContext(actx, "POST", h.base+"/v1/messages", strings.NewReader(body))
	req.Header.Set("x-api-key", tn.key)
	req.Header.Set("anthropic-version", "2023-06-01")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatal(err, resp.StatusCode)
	}
	testutil.Eventually(t, 10*time.Second, "the stream's reservation", func() bool { _, r := ledgerUse(t, h.srv, b); return r == worst })
	br := bufio.NewReader(resp.Body)
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	cancel()
	resp.Body.Close()
	testutil.Eventually(t, 10*time.Second, "the abandoned stream to settle", func() bool {
		s, r := ledgerUse(t, h.srv, b)
		return r == 0 && s > 0 && s <= worst
	})
	abandoned, _ := ledgerUse(t, h.srv, b)

	// A whole stream settles to its recorded cost.
	close(gate)
	if st, resp, _ := postMessages(ctx, h.base, tn.key, body); st != 200 || !strings.Contains(resp, "message_stop") {
		t.Fatalf("stream: %d %s", st, resp)
	}
	recs := h.records(tn.orgID, 2)
	var cost int64
	for _, r := range recs {
		if r.Status == 200 && r.CostKnown {
			cost = r.CostNanoUSD
		}
	}
	s, r := settledUse(t, h.srv, b)
	if cost <= 0 || s != abandoned+cost || r != 0 {
		t.Fatalf("after a whole stream of cost %d: spent %d (was %d), reserved %d", cost, s, abandoned, r)
	}
}

// TestBudgetSpentSurvivesRestartAndFlush: the settled spend comes back
// from the store after a restart of the edge and after Redis lost
// everything (FLUSHALL), so the budget still refuses what does not fit.
func TestBudgetSpentSurvivesRestartAndFlush(t *testing.T) {
	rp := startRedis(t)
	h := newHarness(t, fakeprovider.Options{}, func(c *config.Config) {
		c.RedisURL = rp.url()
		c.CacheEnabled = false
		c.BudgetFlush = 20 * time.Millisecond
	})
	tn := h.addOrg("acme")
	body := budgetBody(300, false)
	worst := worstCase(t, body)
	b := edge.Budget{OrgID: tn.orgID, Period: edge.Day, CapNanoUSD: worst * 2}
	ctx := ctxT(t)
	setBudgetNow(t, h, b)
	if st, resp, _ := postMessages(ctx, h.base, tn.key, body); st != 200 {
		t.Fatalf("first request: %d %s", st, resp)
	}
	spent, _ := settledUse(t, h.srv, b)
	// Now the next request's worst case is one nano-USD too much.
	b.CapNanoUSD = spent + worst - 1
	setBudgetNow(t, h, b)
	testutil.Eventually(t, 10*time.Second, "the spend to reach the store", func() bool {
		n, _ := h.store.Spent(context.Background(), tn.orgID, "", edge.Day, time.Now())
		return n == spent
	})
	// worst + spent > cap: refused.
	check := func(when string) {
		t.Helper()
		if s, _ := ledgerUse(t, h.srv, b); s != spent {
			t.Fatalf("%s: spent %d, want %d", when, s, spent)
		}
		if st, _, _ := postMessages(ctx, h.base, tn.key, body); st != 429 {
			t.Fatalf("%s: a request past the cap got %d", when, st)
		}
	}
	check("before")
	h.restart(nil)
	check("after a restart")
	if err := rp.client().FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	check("after FLUSHALL")
	rp.stop()
	rp.start() // Redis restarted with what it persisted; spend still holds
	check("after a Redis restart")
}

// TestBudgetRedisDown: with Redis unreachable, budgets hold on the
// instance's own ledger; requests are served, never 5xx, and the fallback
// is counted.
func TestBudgetRedisDown(t *testing.T) {
	rp := startRedis(t)
	h := newHarness(t, fakeprovider.Options{}, func(c *config.Config) { c.RedisURL = rp.url(); c.CacheEnabled = false })
	tn := h.addOrg("acme")
	body := budgetBody(300, false)
	worst := worstCase(t, body)
	b := edge.Budget{OrgID: tn.orgID, Period: edge.Day, CapNanoUSD: worst * 2}
	setBudgetNow(t, h, b)
	rp.stop()
	ctx := ctxT(t)
	if st, resp, _ := postMessages(ctx, h.base, tn.key, body); st != 200 {
		t.Fatalf("with Redis down: %d %s", st, resp)
	}
	spent, reserved := settledUse(t, h.srv, b)
	if spent <= 0 || reserved != 0 {
		t.Fatalf("local ledger: spent %d reserved %d", spent, reserved)
	}
	b.CapNanoUSD = spent + worst - 1
	setBudgetNow(t, h, b)
	if st, _, _ := postMessages(ctx, h.base, tn.key, body); st != 429 {
		t.Fatalf("the local ledger did not hold the cap: %d", st)
	}
	if m := metricsText(t, h); !strings.Contains(m, `codex_edge_limit_fallbacks_total{what="budget"}`) {
		t.Error("the fallback is not counted")
	}
}

// setBudgetNow sets a budget through the admin API, which applies it on
// this instance at once.
func setBudgetNow(t *testing.T, h *harness, b edge.Budget) {
	t.Helper()
	body := fmt.Sprintf(`{"key_id":%q,"usd":%q,"period":%q}`, b.KeyID, edge.FormatUSD(b.CapNanoUSD), b.Period)
	if st, resp := adminReq(t, "POST", "http://"+h.srv.AdminAddr()+"/admin/v1/orgs/"+b.OrgID+"/budgets", "", map[string]string{"Content-Type": "application/json"}, body); st != 200 {
		t.Fatalf("set budget: %d %s", st, resp)
	}
}

// TestBudgetProviderErrorSettlesNothing: the provider's own error answer
// is billed nothing, so its reservation settles to nothing.
func TestBudgetProviderErrorSettlesNothing(t *testing.T) {
	prices := filepath.Join(t.TempDir(), "prices.json")
	if err := os.WriteFile(prices, []byte(`{"providers":{"anthropic":{"fake-error-400":{"input":"3.00","cached_input":"0.30","cache_write":"3.75","output":"15.00","max_output":1000}}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, fakeprovider.Options{}, func(c *config.Config) { c.PricingFile = prices; c.CacheEnabled = false })
	tn := h.addOrg("acme")
	b := edge.Budget{OrgID: tn.orgID, Period: edge.Day, CapNanoUSD: 1e9}
	setBudgetNow(t, h, b)
	body := `{"model":"fake-error-400","max_tokens":100,"messages":[{"role":"user","content":"fail please"}]}`
	if st, resp, _ := postMessages(ctxT(t), h.base, tn.key, body); st != 400 || !strings.Contains(resp, "fault injected") {
		t.Fatalf("provider error: %d %s", st, resp)
	}
	if s, r := settledUse(t, h.srv, b); s != 0 || r != 0 {
		t.Fatalf("after a provider error: spent %d reserved %d, want 0, 0", s, r)
	}
}
