package budget

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/persiv/codex/edge"
)

// SpendStore is where settled spend goes (edge.Store).
type SpendStore interface {
	AddSpend(ctx context.Context, s []edge.Spend) error
	Spent(ctx context.Context, orgID, keyID string, p edge.Period, start time.Time) (int64, error)
}

// DefaultFlush is how often a Recorder writes what was settled.
const DefaultFlush = time.Second

// Recorder adds up the settled spend of each org and key per day and per
// month in memory, and writes it to the store every flush interval, off
// the request path (no request waits for a database write). A failed
// write is kept and tried again at the next flush. What it has not
// written yet is lost if the process dies; the amounts in Redis, if any,
// keep counting meanwhile.
type Recorder struct {
	store SpendStore
	every time.Duration
	log   *slog.Logger

	mu      sync.Mutex
	pending map[spendKey]int64
	failing bool
}

type spendKey struct {
	org, key string
	period   edge.Period
	start    int64 // unix seconds
}

// NewRecorder returns a Recorder writing to store every flush (zero:
// DefaultFlush).
func NewRecorder(store SpendStore, flush time.Duration, log *slog.Logger) *Recorder {
	if flush <= 0 {
		flush = DefaultFlush
	}
	if log == nil {
		log = slog.Default()
	}
	return &Recorder{store: store, every: flush, log: log, pending: make(map[spendKey]int64)}
}

// Add records nanoUSD settled at time at by a key of an org: to the org's
// and the key's spend of that day and that month.
func (r *Recorder) Add(orgID, keyID string, at time.Time, nanoUSD int64) {
	if nanoUSD <= 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range []edge.Period{edge.Day, edge.Month} {
		start := p.Start(at).Unix()
		r.pending[spendKey{orgID, "", p, start}] += nanoUSD
		if keyID != "" {
			r.pending[spendKey{orgID, keyID, p, start}] += nanoUSD
		}
	}
}

// Pending is what was settled in a bucket and not written yet.
func (r *Recorder) Pending(b Bucket) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pending[spendKey{b.OrgID, b.KeyID, b.Period, b.Start.Unix()}]
}

// Seed is a Seeder: the store's spend of a bucket plus what is pending.
func (r *Recorder) Seed(ctx context.Context, b Bucket) (int64, error) {
	n, err := r.store.Spent(ctx, b.OrgID, b.KeyID, b.Period, b.Start)
	if err != nil {
		return 0, err
	}
	return n + r.Pending(b), nil
}

// Flush writes what is pending.
func (r *Recorder) Flush(ctx context.Context) error {
	r.mu.Lock()
	batch := r.pending
	r.pending = make(map[spendKey]int64)
	r.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	spends := make([]edge.Spend, 0, len(batch))
	for k, n := range batch {
		spends = append(spends, edge.Spend{OrgID: k.org, KeyID: k.key, Period: k.period, Start: time.Unix(k.start, 0).UTC(), NanoUSD: n})
	}
	err := r.store.AddSpend(ctx, spends)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		// Keep it for the next flush.
		for k, n := range batch {
			r.pending[k] += n
		}
		if !r.failing {
			r.log.Warn("budget spend not written; retrying", "err", err)
			r.failing = true
		}
		return err
	}
	if r.failing {
		r.log.Info("budget spend written again")
		r.failing = false
	}
	return nil
}

// Run flushes every interval until ctx ends, then once more.
func (r *Recorder) Run(ctx context.Context) {
	t := time.NewTicker(r.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_ = r.Flush(fctx) // Flush logs its own failures
			cancel()
			return
		case <-t.C:
			_ = r.Flush(ctx) // logged by Flush; kept to retry next tick
		}
	}
}
