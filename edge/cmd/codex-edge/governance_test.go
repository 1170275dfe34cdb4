package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/budget"
	budgetredis "github.com/persiv/codex/edge/budget/redis"
	"github.com/persiv/codex/edge/fakeprovider"
	"github.com/persiv/codex/edge/internal/testutil"
)

// TestLimitsCLI: limits set merges what it is given into the stored limit,
// 0 removes a limit, and list --json prints DESIGN §10's shape.
func TestLimitsCLI(t *testing.T) {
	c := newCLI(t)
	org := strings.TrimSpace(c.ok("orgs", "create", "acme"))
	var k struct{ ID string }
	if err := json.Unmarshal([]byte(c.ok("keys", "create", "--org", "acme", "--name", "a", "--json")), &k); err != nil {
		t.Fatal(err)
	}
	c.ok("limits", "set", "--org", "acme", "--rpm", "60")
	c.ok("limits", "set", "--org", "acme", "--tpm", "1000")
	c.ok("limits", "set", "--org", org, "--key", k.ID, "--rpm", "5", "--tpm", "50")
	c.ok("limits", "set", "--org", "acme", "--key", k.ID, "--tpm", "0")

	got := c.ok("limits", "list", "--org", "acme", "--json")
	want := `{"org_id":"` + org + `","key_id":"","rpm":60,"tpm":1000}` + "\n" +
		`{"org_id":"` + org + `","key_id":"` + k.ID + `","rpm":5,"tpm":0}` + "\n"
	if got != want {
		t.Fatalf("limits list --json =\n%s\nwant\n%s", got, want)
	}
	// Both 0: the key's limit is gone.
	c.ok("limits", "set", "--org", "acme", "--key", k.ID, "--rpm", "0")
	if got := c.ok("limits", "list", "--org", "acme", "--json"); strings.Contains(got, k.ID) {
		t.Fatalf("after removing the key's limit: %s", got)
	}
	for _, bad := range [][]string{
		{"limits", "set", "--org", "acme"},
		{"limits", "set", "--org", "acme", "--rpm", "-1"},
		{"limits", "set", "--org", "acme", "--key", "key_nope", "--rpm", "1"},
	} {
		if code, _, _ := c.run("", bad...); code == 0 {
			t.Errorf("%v succeeded", bad)
		}
	}
}

// TestBudgetsCLI: budgets set and list --json in DESIGN §10's shape,
// amounts exact decimals; --usd 0 removes.
func TestBudgetsCLI(t *testing.T) {
	c := newCLI(t)
	org := strings.TrimSpace(c.ok("orgs", "create", "acme"))
	var k struct{ ID string }
	if err := json.Unmarshal([]byte(c.ok("keys", "create", "--org", "acme", "--name", "a", "--json")), &k); err != nil {
		t.Fatal(err)
	}
	c.ok("budgets", "set", "--org", "acme", "--usd", "100", "--period", "month")
	c.ok("budgets", "set", "--org", "acme", "--key", k.ID, "--usd", "12.345", "--period", "day")
	c.ok("budgets", "set", "--org", "acme", "--usd", "7", "--period", "day")
	c.ok("budgets", "set", "--org", "acme", "--usd", "0", "--period", "day")

	lines := strings.Split(strings.TrimSpace(c.ok("budgets", "list", "--org", "acme", "--json")), "\n")
	if len(lines) != 2 {
		t.Fatalf("budgets list --json: %q", lines)
	}
	type row struct {
		OrgID       string          `json:"org_id"`
		KeyID       string          `json:"key_id"`
		Period      string          `json:"period"`
		CapUSD      json.RawMessage `json:"cap_usd"`
		SpentUSD    json.RawMessage `json:"spent_usd"`
		ReservedUSD json.RawMessage `json:"reserved_usd"`
		PeriodEnd   time.Time       `json:"period_end"`
	}
	var rows []row
	for _, l := range lines {
		var r row
		dec := json.NewDecoder(strings.NewReader(l))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		rows = append(rows, r)
	}
	now := time.Now().UTC()
	monthEnd := time.Date(now.Year(), now.Month()+1, 1, 0, 0, 0, 0, time.UTC)
	dayEnd := time.Date(now.Year(), now.Month(), now.Day()+1, 0, 0, 0, 0, time.UTC)
	if r := rows[0]; r.OrgID != org || r.KeyID != "" || r.Period != "month" || string(r.CapUSD) != "100" ||
		string(r.SpentUSD) != "0" || string(r.ReservedUSD) != "0" || !r.PeriodEnd.Equal(monthEnd) {
		t.Errorf("org budget = %+v", r)
	}
	if r := rows[1]; r.KeyID != k.ID || r.Period != "day" || string(r.CapUSD) != "12.345" || !r.PeriodEnd.Equal(dayEnd) {
		t.Errorf("key budget = %+v (cap %s)", r, r.CapUSD)
	}
	for _, bad := range [][]string{
		{"budgets", "set", "--org", "acme", "--usd", "1", "--period", "week"},
		{"budgets", "set", "--org", "acme", "--usd", "-1", "--period", "day"},
		{"budgets", "set", "--org", "acme", "--usd", "1e3", "--period", "day"},
		{"budgets", "set", "--org", "acme", "--period", "day"},
	} {
		if code, _, _ := c.run("", bad...); code != 2 {
			t.Errorf("%v: exit %d, want 2 (usage)", bad, code)
		}
	}
}

// TestLimitsSetAppliesToRunningServe: `limits set` on the CLI reaches a
// running serve of the same data directory within CODEX_CHANGE_POLL.
func TestLimitsSetAppliesToRunningServe(t *testing.T) {
	fake := httptest.NewServer(fakeprovider.New(fakeprovider.Options{}))
	t.Cleanup(fake.Close)
	c := newCLI(t)
	c.env["CODEX_LISTEN"], c.env["CODEX_ADMIN_LISTEN"] = "127.0.0.1:0", "127.0.0.1:0"
	c.env["CODEX_CHANGE_POLL"] = "50ms"
	c.env["FAKE_KEY"] = "sk-fake"
	c.ok("orgs", "create", "acme")
	key := strings.TrimSpace(c.ok("keys", "create", "--org", "acme", "--name", "a"))
	c.ok("providers", "set", "--org", "acme", "openai", "--api-key-env", "FAKE_KEY", "--base-url", fake.URL)

	ctx, cancel := context.WithCancel(context.Background())
	var stderr syncBuffer
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"serve"}, strings.NewReader(""), io.Discard, &stderr, func(k string) string { return c.env[k] })
	}()
	t.Cleanup(func() { cancel(); <-done })
	urlRE := regexp.MustCompile(`"url":"(http://[^"]+)"`)
	var base string
	deadline := time.Now().Add(20 * time.Second)
	for base == "" {
		if m := urlRE.FindStringSubmatch(stderr.String()); m != nil {
			base = m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("serve did not start: %s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	chat := func() int {
		req, _ := http.NewRequest("POST", base+"/v1/chat/completions", strings.NewReader(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode
	}
	if st := chat(); st != 200 {
		t.Fatalf("before the limit: %d", st)
	}
	c.ok("limits", "set", "--org", "acme", "--rpm", "1")
	deadline = time.Now().Add(10 * time.Second)
	for chat() != 429 {
		if time.Now().After(deadline) {
			t.Fatal("the CLI's limit never applied to the running serve")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestBudgetsListShowsRedisReservations: with CODEX_REDIS_URL set,
// budgets list reads the live ledger every edge shares, so it shows the
// reservations of requests in progress.
func TestBudgetsListShowsRedisReservations(t *testing.T) {
	url := testutil.RedisURL(t)
	c := newCLI(t)
	c.env["CODEX_REDIS_URL"] = url
	org := strings.TrimSpace(c.ok("orgs", "create", "acme"))
	c.ok("budgets", "set", "--org", "acme", "--usd", "10", "--period", "day")
	// A request in progress on some edge holds 2.5 USD of it.
	opt, err := goredis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rdb := goredis.NewClient(opt)
	defer rdb.Close()
	zero := func(context.Context, budget.Bucket) (int64, error) { return 0, nil }
	b := budget.Bucket{OrgID: org, Period: edge.Day, Start: edge.Day.Start(time.Now()), Cap: 10e9}
	h, r, err := budgetredis.New(rdb, zero, time.Hour).Reserve(context.Background(), "req_cli", []budget.Bucket{b}, 2_500_000_000)
	if err != nil || r != nil {
		t.Fatal(err, r)
	}
	if got := c.ok("budgets", "list", "--org", "acme", "--json"); !strings.Contains(got, `"reserved_usd":2.5`) || !strings.Contains(got, `"spent_usd":0`) {
		t.Fatalf("budgets list with a reservation in progress: %s", got)
	}
	if err := h.Settle(context.Background(), 1_000_000_000); err != nil {
		t.Fatal(err)
	}
	if got := c.ok("budgets", "list", "--org", "acme", "--json"); !strings.Contains(got, `"reserved_usd":0`) || !strings.Contains(got, `"spent_usd":1`) {
		t.Fatalf("budgets list after settling: %s", got)
	}
}
