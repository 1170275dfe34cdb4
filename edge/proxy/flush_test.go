package proxy_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/budget"
	"github.com/persiv/codex/edge/pricing"
	"github.com/persiv/codex/edge/proxy"
	"github.com/persiv/codex/edge/settings"
	"github.com/persiv/codex/edge/store/sqlite"
)

// slowLedger is a budget ledger whose settlements wait for release, as a
// slow Redis would make them.
type slowLedger struct {
	budget.Ledger
	settling chan struct{}
	release  chan struct{}
}

func (l slowLedger) Reserve(ctx context.Context, id string, bs []budget.Bucket, amount int64) (budget.Hold, *budget.Refusal, error) {
	h, r, err := l.Ledger.Reserve(ctx, id, bs, amount)
	if h != nil {
		h = slowHold{Hold: h, l: l}
	}
	return h, r, err
}

type slowHold struct {
	budget.Hold
	l slowLedger
}

func (h slowHold) Settle(ctx context.Context, actual int64) error {
	h.l.settling <- struct{}{}
	<-h.l.release
	return h.Hold.Settle(ctx, actual)
}

// TestAnswerBeforeSettlement: the client has the whole JSON answer while
// the stages after the forwarder (here the budget's settlement) are still
// at work: they no longer add to its latency.
func TestAnswerBeforeSettlement(t *testing.T) {
	ledger := slowLedger{settling: make(chan struct{}, 1), release: make(chan struct{})}
	h, key, _ := setupBenchWith(t, "", func(o *proxy.Options, db *sqlite.DB, orgID, keyID string) {
		if err := db.SetBudget(context.Background(), edge.Budget{OrgID: orgID, KeyID: keyID, Period: edge.Month, CapNanoUSD: edge.MaxBudgetNanoUSD}); err != nil {
			t.Fatal(err)
		}
		prices, _ := pricing.Load(nil)
		spend := budget.NewRecorder(db, time.Hour, nil)
		ledger.Ledger = budget.NewLocal(spend.Seed, time.Hour)
		o.Budget = budget.Options{Budgets: settings.New(db.Budgets).Get, Ledger: ledger, Prices: prices, Spend: spend}
	})
	srv := httptest.NewServer(h)
	defer srv.Close()
	defer close(ledger.release)

	req, err := http.NewRequest(http.MethodPost, srv.URL+"/v1/chat/completions", bytes.NewReader(benchChat))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	type answer struct {
		status int
		body   []byte
		err    error
	}
	got := make(chan answer, 1)
	go func() {
		resp, err := srv.Client().Do(req)
		if err != nil {
			got <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		got <- answer{resp.StatusCode, body, err}
	}()
	select {
	case <-ledger.settling:
	case <-time.After(10 * time.Second):
		t.Fatal("the budget was never settled")
	}
	// The settlement is held: the answer must arrive all the same.
	select {
	case a := <-got:
		if a.err != nil || a.status != 200 || !bytes.Contains(a.body, []byte(`"usage"`)) {
			t.Fatalf("answer while the settlement is held: %d %q %v", a.status, a.body, a.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the client got no complete answer while the budget's settlement was held")
	}
}
