package proxy

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/cache"
	"github.com/persiv/codex/edge/coalesce"
)

const headerCacheTTL = "x-codex-cache-ttl"

// CacheOptions configure the response cache on the request path.
type CacheOptions struct {
	// Cache holds the answers; nil turns caching and coalescing off
	// (every answer is "bypass").
	Cache *cache.Cache
	// TTL is the default lifetime of an entry; default 1h.
	TTL time.Duration
	// MaxTTL bounds x-codex-cache-ttl; default 7 days.
	MaxTTL time.Duration
	// MaxEntryBytes is the largest answer stored; default 4 MiB.
	MaxEntryBytes int
	// Policy, when set, overrides Enabled and TTL for an org or a key.
	Policy func(orgID, keyID string) CachePolicy
	// Enabled is the default for orgs and keys without an override.
	Enabled bool
}

// CachePolicy is the cache setting of one org or key.
type CachePolicy struct {
	Enabled bool
	TTL     time.Duration // 0: CacheOptions.TTL
}

// cacheState is what the cache does for one request.
type cacheState struct {
	lookup   bool // read the cache
	store    bool // store a fresh complete answer
	coalesce bool // share an identical in-flight call
	ttl      time.Duration
	record   string // the record key: the fingerprint, or fingerprint/form
	flight   *coalesce.Flight
	shared   bool // flight is joinable: the leader serves followers
}

// hitResult is what a leader tells its followers about the answer.
type hitResult struct {
	usage     edge.Usage
	model     string
	cost      int64
	costKnown bool
}

func form(stream bool) string {
	if stream {
		return "stream"
	}
	return "json"
}

// planCache reads the request's cache controls into x.cache.
func (p *Proxy) planCache(r *http.Request, x *exchange) error {
	co := &p.opts.Cache
	if co.Cache == nil || !x.f.Cacheable(x.ep) || x.rec.Fingerprint == "" {
		return nil
	}
	ttl := co.TTL
	if v := r.Header.Get(headerCacheTTL); v != "" {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil || n <= 0 || time.Duration(n)*time.Second > co.MaxTTL {
			return &edge.Error{Status: 400, Code: "invalid_cache_ttl",
				Message: "Invalid x-codex-cache-ttl: give a whole number of seconds from 1 to " + strconv.FormatInt(int64(co.MaxTTL/time.Second), 10) + "."}
		}
		ttl = time.Duration(n) * time.Second
	}
	enabled := co.Enabled
	if co.Policy != nil {
		pol := co.Policy(x.key.OrgID, x.key.ID)
		enabled = pol.Enabled
		if pol.TTL > 0 && r.Header.Get(headerCacheTTL) == "" {
			ttl = pol.TTL
		}
	}
	if !enabled {
		return nil
	}
	noCache, noStore := false, false
	for _, f := range r.Header.Values("Cache-Control") {
		for _, d := range strings.Split(f, ",") {
			switch strings.ToLower(strings.TrimSpace(d)) {
			case "no-cache":
				noCache = true
			case "no-store":
				noStore = true
			}
		}
	}
	if noStore {
		return nil
	}
	x.cache = cacheState{lookup: !noCache, store: true, coalesce: !noCache, ttl: ttl, record: x.rec.Fingerprint}
	return nil
}

// cacheHeader is x-codex-cache in canonical form: set directly, it costs
// no canonicalisation.
const cacheHeader = "X-Codex-Cache"

func (x *exchange) setCache(c echo.Context, s edge.CacheStatus) {
	if x.rec.Cache == s {
		return
	}
	x.rec.Cache = s
	c.Response().Header()[cacheHeader] = []string{string(s)}
}

// serveCached answers from the cache or an identical call in flight when
// it can; otherwise it prepares x to record the fresh answer, and returns
// served false.
//
// The flight is joined before the cache is read: a request arriving just
// after another stored its answer either still finds that flight or, once
// the flight is gone, finds the entry, so there is no window in which it
// would call the provider again. Concurrent hits share one lookup.
func (p *Proxy) serveCached(c echo.Context, x *exchange) (served bool, err error) {
	cs := &x.cache
	if !cs.store {
		return false, nil
	}
	if cs.coalesce {
		// One flight per org and fingerprint, whatever the form: a
		// follower of the other form gets the answer rendered.
		f, leader := p.flights.Join(x.key.OrgID + "\x00" + x.rec.Fingerprint)
		if !leader {
			if served, err := p.follow(c, x, f); served {
				p.opts.Metrics.coalesced.Inc()
				return true, err
			}
			if strings.Contains(cs.record, "/") {
				// The leader's answer does not render in this form: this
				// one keeps its own entry.
				cs.flight = coalesce.Solo()
			} else {
				cs.store = false // the leader stores; this one retries alone
			}
			x.setCache(c, edge.CacheMiss)
			return false, nil
		}
		cs.flight, cs.shared = f, true
	} else {
		// A fresh answer was asked for (no-cache): this request shares no
		// older call, but identical ones arriving after it share its own,
		// so from the moment it is answered they get that answer.
		cs.flight, cs.shared = p.flights.Lead(x.key.OrgID+"\x00"+x.rec.Fingerprint), true
	}
	x.setCache(c, edge.CacheMiss)
	if cs.lookup {
		ctx := c.Request().Context()
		e, err := p.opts.Cache.Cache.Get(ctx, x.key.OrgID, cs.record)
		if err == nil {
			out, rerr := cache.Render(x.f, e, x.stream)
			if rerr != nil {
				// Cached in the other form and not renderable in this
				// one: this form keeps its own entry.
				cs.record += "/" + form(x.stream)
				if e, err = p.opts.Cache.Cache.Get(ctx, x.key.OrgID, cs.record); err == nil && e.Stream != x.stream {
					err = cache.ErrMiss
				}
				out = e
			}
			if err == nil {
				p.resolveFlight(x, e)
				return true, p.serveEntry(c, x, out)
			}
		}
		if err != nil && !errors.Is(err, cache.ErrMiss) {
			// Backend trouble: answer without the cache (counted by it).
			p.opts.Logger.Debug("cache unavailable; bypassing", "err", err)
			x.setCache(c, edge.CacheBypass)
			cs.store = false
		}
	}
	if cs.flight == nil {
		cs.flight = coalesce.Solo()
	}
	return false, nil
}

// resolveFlight hands a cached entry to the followers of x's flight.
func (p *Proxy) resolveFlight(x *exchange, e *cache.Entry) {
	f := x.cache.flight
	if f == nil {
		return
	}
	x.cache.flight = nil
	f.Resolve(e, hitResult{usage: e.Usage, model: e.Model, cost: e.CostNanoUSD, costKnown: e.CostKnown})
	p.flights.Forget(f)
	f.Release()
}

// serveEntry answers a cache hit in the form the request asked for.
func (p *Proxy) serveEntry(c echo.Context, x *exchange, e *cache.Entry) error {
	x.setCache(c, edge.CacheHit)
	p.writeEntry(c, x, e, e.NumEvents())
	x.accountHit(hitResult{usage: e.Usage, model: e.Model, cost: e.CostNanoUSD, costKnown: e.CostKnown})
	return nil
}

// writeEntry writes the status, content type and answer of e (for a
// stream, its first n events).
func (p *Proxy) writeEntry(c echo.Context, x *exchange, e *cache.Entry, n int) {
	w := c.Response()
	if e.ContentType != "" {
		w.Header().Set("Content-Type", e.ContentType)
	}
	x.rec.Status = e.Status
	if !e.Stream {
		w.Header().Set("Content-Length", strconv.Itoa(len(e.Body)))
		w.WriteHeader(e.Status)
		if _, err := w.Write(e.Body); err != nil {
			x.rec.Status = statusClientClosed
		}
		return
	}
	w.WriteHeader(e.Status)
	if !p.writeEvents(c, x, e, 0, n) {
		x.rec.Status = statusClientClosed
	}
}

// writeEvents writes events [from, to) of e, leaving out the usage chunk
// a client that did not ask for usage must not see.
func (p *Proxy) writeEvents(c echo.Context, x *exchange, e *cache.Entry, from, to int) bool {
	w := c.Response()
	for i := from; i < to; i++ {
		if e.UsageOnly[i] && x.injected {
			continue
		}
		if _, err := w.Write(e.Event(i)); err != nil {
			return false
		}
	}
	w.Flush()
	return true
}

// accountHit records a request served without a provider call: the
// tokens as they were, at zero cost, and the cost they saved.
func (x *exchange) accountHit(r hitResult) {
	x.rec.Usage = r.usage
	if r.model != "" {
		x.rec.Model = r.model
	}
	x.rec.CostNanoUSD, x.rec.CostKnown = 0, true
	if r.costKnown {
		x.rec.SavedNanoUSD = r.cost
	}
}

// follow serves x from the flight f another identical request leads. A
// follower asking for the leader's form receives a stream event by event;
// one asking for the other form waits for the complete answer and gets it
// rendered. It returns served false when the leader gave up, or its answer
// cannot be rendered in x's form: x then calls the provider itself.
func (p *Proxy) follow(c echo.Context, x *exchange, f *coalesce.Flight) (bool, error) {
	defer f.Release()
	ctx := c.Request().Context()
	v := f.Snapshot()
	var err error
	for !v.Done && (!v.Started || !x.stream || !v.Entry.Stream) {
		if v, err = f.Wait(ctx, v); err != nil {
			x.rec.Status = statusClientClosed
			return true, nil
		}
	}
	if v.Err != nil && (!v.Started || !x.stream || !v.Entry.Stream) {
		if ae := (*edge.Error)(nil); errors.As(v.Err, &ae) {
			return true, ae
		}
		return false, nil
	}
	if !x.stream || !v.Entry.Stream {
		e := &v.Entry
		if e.Stream != x.stream {
			if e.Status >= 300 {
				return false, nil // a provider error: this form asks itself
			}
			out, err := cache.Render(x.f, e, x.stream)
			if err != nil {
				x.cache.record = x.rec.Fingerprint + "/" + form(x.stream)
				return false, nil
			}
			e = out
		}
		x.setCache(c, edge.CacheHit)
		p.writeEntry(c, x, e, e.NumEvents())
		if r, ok := v.Result.(hitResult); ok {
			x.accountHit(r)
		}
		return true, nil
	}
	x.setCache(c, edge.CacheHit)
	w := c.Response()
	if v.Entry.ContentType != "" {
		w.Header().Set("Content-Type", v.Entry.ContentType)
	}
	x.rec.Status = v.Entry.Status
	w.WriteHeader(v.Entry.Status)
	w.Flush()
	sent, sentAll := 0, false
	for {
		n := v.Entry.NumEvents()
		if !p.writeEvents(c, x, &v.Entry, sent, n) {
			x.rec.Status = statusClientClosed
			return true, nil
		}
		sent = n
		if v.Done {
			break
		}
		if !sentAll && n > 0 && cache.FinalEvent(x.f, x.ep, v.Entry.Event(n-1)) {
			// The client has the whole answer and may hang up now; the
			// leader is about to finish, and its usage is what this hit
			// is accounted with.
			sentAll = true
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), followerResultWait)
			defer cancel()
		}
		if v, err = f.Wait(ctx, v); err != nil {
			x.rec.Status = statusClientClosed
			return true, nil
		}
	}
	if v.Err != nil {
		ae := errUnreach
		errors.As(v.Err, &ae)
		x.rec.Status = ae.Status
		p.writeStreamError(c, x, ae)
		return true, nil
	}
	if r, ok := v.Result.(hitResult); ok {
		x.accountHit(r)
	}
	return true, nil
}

// followerResultWait bounds how long a follower that has sent its client
// the final event waits for the leader's accounting.
const followerResultWait = 5 * time.Second

// finishFlight ends the leader's flight once its answer is complete:
// followers get it, and a complete 2xx answer small enough is stored.
func (p *Proxy) finishFlight(x *exchange, status int, body []byte) {
	f := x.cache.flight
	if f == nil {
		return
	}
	x.cache.flight = nil
	res := hitResult{usage: x.rec.Usage, model: x.rec.Model, cost: x.rec.CostNanoUSD, costKnown: x.rec.CostKnown}
	store := x.cache.store && status >= 200 && status < 300
	f.Finish(body, res, func(e *cache.Entry) {
		e.Provider, e.Endpoint = x.f.Provider(), x.ep
		e.Model, e.Usage, e.CostNanoUSD, e.CostKnown = res.model, res.usage, res.cost, res.costKnown
		e.Created = time.Now().Unix()
		if e.Size() > p.opts.Cache.MaxEntryBytes || (e.Stream && !e.Complete(x.f)) {
			store = false
		}
	})
	if !store {
		f.Fail(nil) // already done: only stops taking followers
		return
	}
	// Sealing and storing happen off the request path; until they are
	// done, identical requests are served from the flight.
	org, record, ttl := x.key.OrgID, x.cache.record, x.cache.ttl
	started := p.opts.Cache.Cache.Background(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := p.opts.Cache.Cache.Set(ctx, org, record, f.Entry(), ttl); err != nil {
			p.opts.Logger.Debug("cache store failed", "err", err)
		}
		f.Fail(nil) // done already: the entry takes over from the flight
	})
	if !started {
		f.Fail(nil) // shutting down: nothing more is stored
	}
}

// failFlight ends the leader's flight without a complete answer.
func (x *exchange) failFlight(err error) {
	if f := x.cache.flight; f != nil {
		x.cache.flight = nil
		if err == nil {
			err = coalesce.ErrRetry
		}
		f.Fail(err)
	}
}
