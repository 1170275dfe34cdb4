// Package budget is the budget stage of the request path (DESIGN §10):
// spend caps in USD per org and per key, per UTC day or month, that
// concurrent and streaming requests cannot overspend, because each
// request reserves its worst-case cost before it reaches the provider.
//
// The stage sits between the cache and the forwarder, so only requests
// that reach the provider take part: a cache hit reserves nothing. Before
// the call it reserves the worst case in every budget that applies (the
// org's, the key's), all or none; once the answer ended (a stream
// included: streams end inside the forwarder) it settles the reservation
// to the recorded cost (nothing for the provider's own error answer), or
// to the worst case when the cost could not be told (a stream cut before
// its usage, a time-out); when no provider call happened it releases it.
//
// Worst case: the request body's bytes / 3 as input tokens (tokens of any
// real text and of JSON syntax average well over three bytes; images and
// other base64 data are far over, so this errs high) at the dearest rate
// input can bill at, plus the request's own output cap (max_tokens,
// max_completion_tokens or max_output_tokens) or else the model's maximum
// output from the price table, at the output rate.
//
// The settled spend of every org and key, per day and per month, is
// written to the store (Recorder, off the request path), which is the
// source of truth a ledger starts from after a restart or a Redis flush.
package budget

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/breaker"
	"github.com/persiv/codex/edge/pipeline"
	"github.com/persiv/codex/edge/pricing"
	"github.com/persiv/codex/edge/provider"
)

// BytesPerToken is the input estimate's divisor: a request of n bytes is
// taken to carry at most ceil(n / BytesPerToken) input tokens.
const BytesPerToken = 3

// DefaultReservationTTL is how long a reservation lives when its request
// never ends it (its instance died): longer than any answer should take.
const DefaultReservationTTL = time.Hour

// Budgets returns an org's budgets (edge.Store.Budgets, held in memory).
type Budgets func(ctx context.Context, orgID string) ([]edge.Budget, error)

// WorstCaser prices a request's worst case (pricing.Table).
type WorstCaser interface {
	WorstCase(b pricing.Biller, ep provider.Endpoint, model string, inputTokens, outputCap int64) (int64, bool)
}

// Options configure the stage.
type Options struct {
	Budgets Budgets
	Ledger  Ledger
	Prices  WorstCaser
	// Spend records the settled cost of every request that reached a
	// provider, budget or not, for the store.
	Spend *Recorder
	// AllowUnpriced lets a request for a model with no price through a
	// budget, reserving nothing (CODEX_BUDGET_UNPRICED=allow).
	AllowUnpriced bool
	Metrics       *pipeline.Metrics
	Now           func() time.Time
}

var (
	errStore      = &edge.Error{Status: 503, Code: "store_unavailable", Message: "The gateway cannot read this org's budgets right now; retry shortly."}
	errUnpriced   = &edge.Error{Status: 400, Code: "model_not_priced", Message: "This model has no price on the gateway, so a budget cannot be enforced for it; ask the operator to price it (CODEX_PRICING_FILE) or to allow unpriced models (CODEX_BUDGET_UNPRICED=allow)."}
	errLedgerGone = &edge.Error{Status: 503, Code: "budget_unavailable", Message: "The gateway cannot check this budget right now; retry shortly."}
)

// Stage returns the budget stage.
func Stage(o Options) pipeline.Stage {
	if o.Metrics == nil {
		o.Metrics = pipeline.NewMetrics(nil, nil)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return func(next pipeline.Handler) pipeline.Handler {
		return pipeline.HandlerFunc(func(x *pipeline.Exchange) error { return serve(x, next, &o) })
	}
}

func serve(x *pipeline.Exchange, next pipeline.Handler, o *Options) error {
	bs, err := o.Budgets(x.Context(), x.Key.OrgID)
	if err != nil {
		x.Log().Error("budgets unreadable", "err", err)
		return errStore
	}
	now := o.Now()
	var buckets []Bucket
	for _, b := range bs {
		if b.KeyID == "" || b.KeyID == x.Key.ID {
			start := b.Period.Start(now)
			buckets = append(buckets, Bucket{OrgID: b.OrgID, KeyID: b.KeyID, Period: b.Period, Start: start, Cap: b.CapNanoUSD})
		}
	}
	if len(buckets) == 0 || x.Format.Billing(x.Endpoint) == provider.Free {
		// Nothing to cap, or nothing to pay (listing models, counting
		// tokens): an exhausted budget does not stop those.
		err := next.Serve(x)
		record(x, o, now, 0)
		return err
	}
	worst, priced := o.Prices.WorstCase(x.Format, x.Endpoint, x.Rec.Model, inputTokens(x.Body), x.OutputCap)
	if !priced {
		if !o.AllowUnpriced {
			o.Metrics.LimitRefused("model_not_priced")
			return errUnpriced
		}
		worst = 0
	}
	hold, refusal, err := o.Ledger.Reserve(x.Context(), x.Rec.ID, buckets, worst)
	if err != nil {
		if x.Context().Err() != nil {
			x.Rec.Status = pipeline.StatusClientClosed
			return nil
		}
		x.Log().Error("budget reservation failed", "err", err)
		return errLedgerGone
	}
	if refusal != nil {
		o.Metrics.LimitRefused("budget")
		x.Rec.Refused = edge.RefusedBudget
		return refuse(buckets[refusal.Index], refusal, worst, now)
	}
	err = next.Serve(x)
	// The answer has ended, whatever happened to the client; settling
	// must not depend on it. The Redis client's own timeouts bound it (a
	// timer here would cost allocations on every request for nothing).
	ctx := context.WithoutCancel(x.Context())
	if x.UpstreamStart.IsZero() {
		if rerr := hold.Release(ctx); rerr != nil {
			x.Log().Warn("budget reservation not released; it expires by itself", "err", rerr)
		}
		return err
	}
	actual := settlement(x, err, worst)
	if serr := hold.Settle(ctx, actual); serr != nil {
		x.Log().Warn("budget reservation not settled; it expires by itself", "err", serr)
	}
	record(x, o, now, actual)
	return err
}

// settlement is what a request that reached the provider is settled to:
// its recorded cost; nothing when the provider answered with an error of
// its own (providers bill no failed request); else, when the cost cannot
// be told (a stream cut before its usage, a time-out, a client gone while
// the provider may have gone on), the worst case.
func settlement(x *pipeline.Exchange, err error, worst int64) int64 {
	switch {
	case x.Rec.CostKnown:
		return x.Rec.CostNanoUSD
	case err == nil && x.Rec.Status >= 400 && x.Rec.Status != pipeline.StatusClientClosed:
		return 0
	}
	return worst
}

// record hands the cost of a request that reached the provider to the
// Recorder; with a budget, what was settled (fallback, the worst case).
func record(x *pipeline.Exchange, o *Options, at time.Time, settled int64) {
	if o.Spend == nil || x.UpstreamStart.IsZero() {
		return
	}
	n := settled
	if n == 0 && x.Rec.CostKnown {
		n = x.Rec.CostNanoUSD
	}
	if n > 0 {
		o.Spend.Add(x.Key.OrgID, x.Key.ID, at, n)
	}
}

// refuse answers a budget without room: 429, OpenAI type
// insufficient_quota and code budget_exceeded (Anthropic
// rate_limit_error). When the worst case alone does not fit what is left,
// Retry-After is the time until the period ends; when reservations of
// requests in progress fill it, a second.
func refuse(b Bucket, r *Refusal, worst int64, now time.Time) error {
	retry := 1
	whose := "org"
	if b.KeyID != "" {
		whose = "gateway key"
	}
	left := max(b.Cap-r.SpentNanoUSD, 0)
	if worst > left {
		retry = int(math.Ceil(b.Period.End(b.Start).Sub(now).Seconds()))
	}
	return &edge.Error{Status: 429, Code: "budget_exceeded", Type: "insufficient_quota", RetryAfter: max(retry, 1),
		Message: fmt.Sprintf("The %s's %s budget of %s USD cannot cover this request: %s USD spent, %s USD reserved by requests in progress, and this request may cost up to %s USD.",
			whose, b.Period, edge.FormatUSD(b.Cap), edge.FormatUSD(r.SpentNanoUSD), edge.FormatUSD(r.ReservedNanoUSD), edge.FormatUSD(worst))}
}

// inputTokens is the input estimate: ceil(bytes / BytesPerToken).
func inputTokens(body []byte) int64 {
	return (int64(len(body)) + BytesPerToken - 1) / BytesPerToken
}

// Fallback is a Ledger that uses Primary (Redis) while it answers and
// Local otherwise: a Redis that cannot be reached never fails a request,
// each instance then reserving on its own (so at most the number of
// instances times a cap can be spent while it is down). A hold ends where
// it was made. After a failure Primary rests for Cooldown. The switch is
// logged once each way and counted.
type Fallback struct {
	Primary  Ledger
	Local    *Local
	Cooldown time.Duration
	Logger   *slog.Logger
	Metrics  *pipeline.Metrics

	state breaker.Breaker
}

// DefaultCooldown is how long Fallback leaves Redis alone after it failed.
const DefaultCooldown = breaker.DefaultCooldown

func (f *Fallback) use() bool { return f.state.Use() }

func (f *Fallback) failed(err error) {
	if f.state.Fail(f.Cooldown) && f.Logger != nil {
		f.Logger.Warn("budgets: Redis unreachable; each instance reserves on its own until it is back", "err", err)
	}
}

func (f *Fallback) ok() {
	if !f.state.OK() {
		return
	}
	// What the local ledger counted meanwhile went to the store; if Redis
	// fails again, start afresh from there.
	f.Local.Forget()
	if f.Logger != nil {
		f.Logger.Info("budgets: Redis reachable again; budgets are shared again")
	}
}

// Reserve implements Ledger.
func (f *Fallback) Reserve(ctx context.Context, id string, bs []Bucket, amount int64) (Hold, *Refusal, error) {
	if f.use() {
		h, r, err := f.Primary.Reserve(ctx, id, bs, amount)
		if err == nil {
			f.ok()
			if h != nil {
				h = &primaryHold{Hold: h, f: f}
			}
			return h, r, nil
		}
		if ctx.Err() != nil {
			return nil, nil, err
		}
		f.failed(err)
	}
	if f.Metrics != nil {
		f.Metrics.LimitFallback("budget")
	}
	return f.Local.Reserve(ctx, id, bs, amount)
}

// primaryHold notes Redis failing while a hold ends.
type primaryHold struct {
	Hold
	f *Fallback
}

func (h *primaryHold) Settle(ctx context.Context, actual int64) error {
	err := h.Hold.Settle(ctx, actual)
	if err != nil {
		h.f.failed(err)
	}
	return err
}

func (h *primaryHold) Release(ctx context.Context) error {
	err := h.Hold.Release(ctx)
	if err != nil {
		h.f.failed(err)
	}
	return err
}

// Use implements Ledger.
func (f *Fallback) Use(ctx context.Context, b Bucket) (int64, int64, error) {
	if f.use() {
		s, r, err := f.Primary.Use(ctx, b)
		if err == nil {
			return s, r, nil
		}
		f.failed(err)
	}
	return f.Local.Use(ctx, b)
}
