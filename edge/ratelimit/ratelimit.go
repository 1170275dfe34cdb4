// Package ratelimit is the rate-limit stage of the request path (DESIGN
// §10): requests per minute (rpm) and tokens per minute (tpm) per org and
// per key, as a GCRA. It runs after auth, so that a refused request costs
// no body read, and wraps the cache, so that a cache hit counts against
// rpm and never against tpm.
//
// A request is admitted while every limit that applies has room (for tpm:
// at least one token left); rpm is charged on admission, tpm with the
// request's real token count once its answer ended (input, cached input,
// cache writes and output, as the provider counted them), so a large
// answer delays the requests after it rather than being refused half-way.
// A request refused by one limit still counts against the rpm limits
// checked before it, as providers count refused requests.
//
// Every response of a limited key carries OpenAI's x-ratelimit-* headers;
// a refusal is 429 in the route's provider shape with Retry-After.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/breaker"
	"github.com/persiv/codex/edge/pipeline"
)

// State is a limit's state after a Take.
type State struct {
	Allowed   bool
	Remaining int64 // units left, after what this Take charged
	// RetryAfter, when refused, is how long until the limit has room.
	RetryAfter time.Duration
	// Reset is how long until the limit is full again.
	Reset time.Duration
}

// Counter holds the GCRA state of limits: a limit of perMinute units per
// minute, with a burst of perMinute (a whole minute's worth), per key.
type Counter interface {
	// Take charges n units when the limit has room for them; n 0 charges
	// nothing and asks for room for one unit.
	Take(ctx context.Context, key string, perMinute, n int64) (State, error)
	// Charge charges n units whatever the room.
	Charge(ctx context.Context, key string, perMinute, n int64) error
}

// Take is one limit's part of admitting a request: n units of the
// counter key, limited to perMinute (n 0 asks for room for one unit, as
// Counter.Take).
type Take struct {
	Key       string
	PerMinute int64
	N         int64
}

// Batcher is a Counter that makes several takes in one call (Redis: one
// round trip instead of one per limit). It makes them in order and stops
// at the first without room (Allowed false; for n 0, no unit left), as a
// sequence of Take calls would; it returns the states of those made.
type Batcher interface {
	TakeAll(ctx context.Context, takes []Take, states []State) (int, error)
}

// takeAll makes takes through c, in one call when c is a Batcher.
func takeAll(ctx context.Context, c Counter, takes []Take, states []State) (int, error) {
	if b, ok := c.(Batcher); ok {
		return b.TakeAll(ctx, takes, states)
	}
	return takeEach(ctx, c, takes, states)
}

func takeEach(ctx context.Context, c Counter, takes []Take, states []State) (int, error) {
	for i, t := range takes {
		st, err := c.Take(ctx, t.Key, t.PerMinute, t.N)
		if err != nil {
			return i, err
		}
		states[i] = st
		if !st.Allowed {
			return i + 1, nil
		}
	}
	return len(takes), nil
}

// Limits returns an org's limits as a Set (edge.Store.Limits through
// Load, held in memory).
type Limits func(ctx context.Context, orgID string) (*Set, error)

// Set is an org's limits as the request path reads them: indexed by key,
// with their counter names and limit header values made once, when they
// load, rather than on every request.
type Set struct {
	org  *rule            // the org's own limit; nil when none
	keys map[string]*rule // by key id
}

type rule struct {
	rpm, tpm       int64
	rpmKey, tpmKey string   // counter names
	rpmHdr, tpmHdr []string // X-Ratelimit-Limit-* values
}

// NewSet indexes an org's limits.
func NewSet(ls []edge.Limit) *Set {
	s := &Set{}
	for _, l := range ls {
		r := &rule{rpm: l.RPM, tpm: l.TPM, rpmKey: counterKey(l, "rpm"), tpmKey: counterKey(l, "tpm"),
			rpmHdr: []string{strconv.FormatInt(l.RPM, 10)}, tpmHdr: []string{strconv.FormatInt(l.TPM, 10)}}
		if l.KeyID == "" {
			s.org = r
			continue
		}
		if s.keys == nil {
			s.keys = make(map[string]*rule)
		}
		s.keys[l.KeyID] = r
	}
	return s
}

// Load returns a loader of Sets from a loader of an org's limits (for
// settings.New).
func Load(limits func(ctx context.Context, orgID string) ([]edge.Limit, error)) func(ctx context.Context, orgID string) (*Set, error) {
	return func(ctx context.Context, orgID string) (*Set, error) {
		ls, err := limits(ctx, orgID)
		if err != nil {
			return nil, err
		}
		return NewSet(ls), nil
	}
}

// applying returns the rules that apply to a key's request: its org's,
// then its own.
func (s *Set) applying(keyID string) (rs [2]*rule, n int) {
	if s.org != nil {
		rs[n] = s.org
		n++
	}
	if r := s.keys[keyID]; r != nil {
		rs[n] = r
		n++
	}
	return rs, n
}

// Options configure the stage.
type Options struct {
	Limits Limits
	// Counter holds the limits' state: Redis to share it among instances,
	// or Local.
	Counter Counter
	Metrics *pipeline.Metrics
}

// The headers OpenAI sends with every answer, and so the edge with every
// answer of a limited key.
//
//nolint:gosec // G101: header names, not credentials
const (
	HeaderLimitRequests     = "X-Ratelimit-Limit-Requests"
	HeaderRemainingRequests = "X-Ratelimit-Remaining-Requests"
	HeaderResetRequests     = "X-Ratelimit-Reset-Requests"
	HeaderLimitTokens       = "X-Ratelimit-Limit-Tokens"
	HeaderRemainingTokens   = "X-Ratelimit-Remaining-Tokens"
	HeaderResetTokens       = "X-Ratelimit-Reset-Tokens"
)

var errStore = &edge.Error{Status: 503, Code: "store_unavailable", Message: "The gateway cannot read this org's rate limits right now; retry shortly."}

// Stage returns the rate-limit stage.
func Stage(o Options) pipeline.Stage {
	if o.Metrics == nil {
		o.Metrics = pipeline.NewMetrics(nil, nil)
	}
	return func(next pipeline.Handler) pipeline.Handler {
		return pipeline.HandlerFunc(func(x *pipeline.Exchange) error {
			set, err := o.Limits(x.Context(), x.Key.OrgID)
			if err != nil {
				x.Log().Error("rate limits unreadable", "err", err)
				return errStore
			}
			rs, n := set.applying(x.Key.ID)
			if n == 0 {
				return next.Serve(x)
			}
			tpm, nt, err := admit(x, o, rs[:n])
			var ae *edge.Error
			if errors.As(err, &ae) {
				return err
			}
			if err != nil {
				// Only a client gone fails a Take (Redis failing falls
				// back to the local counters).
				x.Rec.Status = pipeline.StatusClientClosed
				return nil
			}
			err = next.Serve(x)
			if nt > 0 && x.Rec.Cache != edge.CacheHit {
				if used := tokens(x.Rec.Usage); used > 0 {
					// The client may be gone; the tokens were used all
					// the same. The Redis client's own timeouts bound
					// the charge (a timer here would cost allocations on
					// every request for nothing).
					ctx := context.WithoutCancel(x.Context())
					for _, c := range tpm[:nt] {
						if cerr := o.Counter.Charge(ctx, c.key, c.perMinute, used); cerr != nil {
							x.Log().Warn("tpm not charged", "err", cerr)
						}
					}
				}
			}
			return err
		})
	}
}

type counted struct {
	key       string
	perMinute int64
}

// admit checks every rule of rs (rpm first, charged, then tpm, asked for
// room), in one call to the counter, sets the headers, and returns the
// tpm counters to charge once the answer ends.
func admit(x *pipeline.Exchange, o Options, rs []*rule) (tpm [2]counted, nt int, err error) {
	var (
		takes  [4]Take
		states [4]State
		kinds  [4]byte // 'r' rpm, 't' tpm
		rules  [4]*rule
		n      int
	)
	for _, r := range rs {
		if r.rpm > 0 {
			takes[n], kinds[n], rules[n] = Take{r.rpmKey, r.rpm, 1}, 'r', r
			n++
		}
	}
	for _, r := range rs {
		if r.tpm > 0 {
			takes[n], kinds[n], rules[n] = Take{r.tpmKey, r.tpm, 0}, 't', r
			n++
		}
	}
	var made int
	if b, ok := o.Counter.(Batcher); ok {
		// Copies: what goes through an interface escapes to the heap,
		// and the in-process counter's path should not pay for it.
		bt, bs := takes, states
		made, err = b.TakeAll(x.Context(), bt[:n], bs[:n])
		states = bs
	} else {
		made, err = takeEach(x.Context(), o.Counter, takes[:n], states[:n])
	}
	if err != nil {
		return tpm, 0, fmt.Errorf("rate limit: %w", err)
	}
	var (
		req, tok       State
		reqLim, tokLim []string
	)
	for i := range made {
		st, r := states[i], rules[i]
		if kinds[i] == 'r' {
			if !st.Allowed {
				return tpm, 0, refuse(x, o, "requests", r.rpm, r.rpmHdr, st)
			}
			if reqLim == nil || st.Remaining < req.Remaining {
				req, reqLim = st, r.rpmHdr
			}
			continue
		}
		if !st.Allowed {
			return tpm, 0, refuse(x, o, "tokens", r.tpm, r.tpmHdr, st)
		}
		if tokLim == nil || st.Remaining < tok.Remaining {
			tok, tokLim = st, r.tpmHdr
		}
		tpm[nt] = counted{r.tpmKey, r.tpm}
		nt++
	}
	h := x.W.Header()
	if reqLim != nil {
		setTrio(h, HeaderLimitRequests, HeaderRemainingRequests, HeaderResetRequests, reqLim, req)
	}
	if tokLim != nil {
		setTrio(h, HeaderLimitTokens, HeaderRemainingTokens, HeaderResetTokens, tokLim, tok)
	}
	return tpm, nt, nil
}

// setTrio sets a limit's three headers. The limit's value is the rule's,
// made when it loaded (never modified: net/http only reads it); the other
// two share one allocation.
func setTrio(h map[string][]string, limit, remaining, reset string, lim []string, st State) {
	v := make([]string, 2)
	v[0] = strconv.FormatInt(max(st.Remaining, 0), 10)
	v[1] = FormatReset(st.Reset)
	h[limit] = lim
	h[remaining] = v[0:1:1]
	h[reset] = v[1:2:2]
}

// FormatReset writes a reset time as OpenAI does: a Go duration, to the
// millisecond ("12s", "1.5s", "6m0s").
func FormatReset(d time.Duration) string {
	if d <= 0 {
		return "0s"
	}
	return d.Round(time.Millisecond).String()
}

// refuse answers a limit without room: 429 with the limit's headers and
// Retry-After in whole seconds, at least 1.
func refuse(x *pipeline.Exchange, o Options, kind string, n int64, lim []string, st State) error {
	h := x.W.Header()
	unit := "requests"
	if kind == "tokens" {
		setTrio(h, HeaderLimitTokens, HeaderRemainingTokens, HeaderResetTokens, lim, st)
		unit = "tokens"
		o.Metrics.LimitRefused("tpm")
	} else {
		setTrio(h, HeaderLimitRequests, HeaderRemainingRequests, HeaderResetRequests, lim, st)
		o.Metrics.LimitRefused("rpm")
	}
	x.Rec.Refused = edge.RefusedRateLimit
	retry := int(math.Ceil(st.RetryAfter.Seconds()))
	return &edge.Error{Status: 429, Code: "rate_limit_exceeded", Type: kind, RetryAfter: max(retry, 1),
		Message: fmt.Sprintf("Rate limit reached for %s per minute (limit %d) on this gateway key or its org; retry in %s.", unit, n, FormatReset(st.RetryAfter))}
}

// counterKey names a limit's counter; the org id in braces is a Redis
// Cluster hash tag, so an org's counters share a slot.
func counterKey(l edge.Limit, kind string) string {
	if l.KeyID == "" {
		return "{" + l.OrgID + "}:org:" + kind
	}
	return "{" + l.OrgID + "}:key:" + l.KeyID + ":" + kind
}

// tokens is what a request counts against tpm: every known token count.
func tokens(u edge.Usage) int64 {
	var n int64
	for _, c := range []edge.Count{u.Input, u.CachedInput, u.CacheWrite, u.Output} {
		if c.Known && c.N > 0 {
			n += c.N
		}
	}
	return n
}

// Fallback is a Counter that uses Primary (Redis) while it answers and
// Local otherwise: a Redis that cannot be reached never fails a request,
// each instance then counting on its own (so at most the number of
// instances times a limit passes). After a failure Primary rests for
// Cooldown, so requests do not each wait for its timeout. The switch is
// logged once each way and counted.
type Fallback struct {
	Primary  Counter
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
		f.Logger.Warn("rate limits: Redis unreachable; each instance counts on its own until it is back", "err", err)
	}
}

func (f *Fallback) ok() {
	if f.state.OK() && f.Logger != nil {
		f.Logger.Info("rate limits: Redis reachable again; limits are shared again")
	}
}

func (f *Fallback) fellBack() {
	if f.Metrics != nil {
		f.Metrics.LimitFallback("ratelimit")
	}
}

// Take implements Counter.
func (f *Fallback) Take(ctx context.Context, key string, perMinute, n int64) (State, error) {
	if f.use() {
		st, err := f.Primary.Take(ctx, key, perMinute, n)
		if err == nil {
			f.ok()
			return st, nil
		}
		if ctx.Err() != nil {
			return State{}, err
		}
		f.failed(err)
	}
	f.fellBack()
	return f.Local.Take(ctx, key, perMinute, n)
}

// TakeAll implements Batcher: in one call to Primary when it is one.
func (f *Fallback) TakeAll(ctx context.Context, takes []Take, states []State) (int, error) {
	if f.use() {
		n, err := takeAll(ctx, f.Primary, takes, states)
		if err == nil {
			f.ok()
			return n, nil
		}
		if ctx.Err() != nil {
			return 0, err
		}
		f.failed(err)
	}
	f.fellBack()
	return takeEach(ctx, f.Local, takes, states)
}

// Charge implements Counter.
func (f *Fallback) Charge(ctx context.Context, key string, perMinute, n int64) error {
	if f.use() {
		err := f.Primary.Charge(ctx, key, perMinute, n)
		if err == nil {
			f.ok()
			return nil
		}
		if errors.Is(err, context.Canceled) {
			return err
		}
		f.failed(err)
	}
	f.fellBack()
	return f.Local.Charge(ctx, key, perMinute, n)
}
