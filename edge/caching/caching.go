// Package caching is the cache layer of the request path: it answers a
// request from the response cache or from an identical request's provider
// call in flight (coalescing), and otherwise lets the request through with
// a Recorder that shares the answer with those who join meanwhile and
// stores it once complete. It renders answers stream ↔ JSON, so that either
// form is served from one entry.
package caching

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/cache"
	"github.com/persiv/codex/edge/coalesce"
	"github.com/persiv/codex/edge/pipeline"
)

const headerCacheTTL = "x-codex-cache-ttl"

// Options configure the cache layer.
type Options struct {
	// Cache holds the answers; nil turns caching and coalescing off
	// (every answer is "bypass").
	Cache *cache.Cache
	// TTL is the default lifetime of an entry (CODEX_CACHE_TTL).
	TTL time.Duration
	// MaxTTL bounds x-codex-cache-ttl (CODEX_CACHE_MAX_TTL).
	MaxTTL time.Duration
	// MaxEntryBytes is the largest answer stored
	// (CODEX_CACHE_MAX_ENTRY_BYTES).
	MaxEntryBytes int
	// MaxShareBytes is the largest stream shared with followers; a larger
	// one fails them (they ask the provider themselves).
	MaxShareBytes int
	// Policy, when set, overrides Enabled and TTL for an org or a key.
	Policy func(orgID, keyID string) Policy
	// Enabled is the default for orgs and keys without an override.
	Enabled bool
	Metrics *pipeline.Metrics
}

// Policy is the cache setting of one org or key.
type Policy struct {
	Enabled bool
	TTL     time.Duration // 0: Options.TTL
}

// DefaultOptions are the DESIGN §8 defaults (caching off).
func DefaultOptions() Options {
	return Options{TTL: time.Hour, MaxTTL: 7 * 24 * time.Hour, MaxEntryBytes: 4 << 20, MaxShareBytes: 64 << 20}
}

func (o Options) withDefaults() Options {
	d := DefaultOptions()
	if o.TTL <= 0 {
		o.TTL = d.TTL
	}
	if o.MaxTTL <= 0 {
		o.MaxTTL = d.MaxTTL
	}
	if o.MaxEntryBytes <= 0 {
		o.MaxEntryBytes = d.MaxEntryBytes
	}
	if o.MaxShareBytes <= 0 {
		o.MaxShareBytes = d.MaxShareBytes
	}
	if o.Metrics == nil {
		o.Metrics = pipeline.NewMetrics(nil, nil)
	}
	return o
}

// Layer is the cache layer.
type Layer struct {
	o Options
	// flights are the identical requests in progress, by org and
	// fingerprint.
	flights coalesce.Group
}

// Stage returns the cache layer as a stage of the request path; with no
// cache it passes every request on.
func Stage(o Options) pipeline.Stage {
	if o.Cache == nil {
		return func(next pipeline.Handler) pipeline.Handler { return next }
	}
	l := &Layer{o: o.withDefaults()}
	return func(next pipeline.Handler) pipeline.Handler {
		return pipeline.HandlerFunc(func(x *pipeline.Exchange) error { return l.serve(x, next) })
	}
}

// state is what the cache does for one request.
type state struct {
	lookup   bool // read the cache
	store    bool // store a fresh complete answer
	coalesce bool // share an identical in-flight call
	ttl      time.Duration
	record   string // the record key: the fingerprint, or fingerprint/form
	flight   *coalesce.Flight
	shared   bool // flight is joinable: the leader serves followers
}

func (l *Layer) serve(x *pipeline.Exchange, next pipeline.Handler) error {
	st, err := l.plan(x)
	if err != nil || !st.store {
		if err != nil {
			return err
		}
		return next.Serve(x)
	}
	if served, err := l.answer(x, &st); served {
		return err
	}
	if st.flight == nil {
		return next.Serve(x) // the leader stores; this one asks alone
	}
	rec := &recorder{l: l, x: x, st: st}
	x.Recorder = rec
	err = next.Serve(x)
	if rec.stop != nil && rec.stop() {
		// The client is still there: it leaves the flight now.
		rec.flight.Release()
	}
	if !rec.ended {
		// The request ended without an answer to share.
		rec.End(nil, err)
	}
	return err
}

func form(stream bool) string {
	if stream {
		return "stream"
	}
	return "json"
}

// plan reads the request's cache controls.
func (l *Layer) plan(x *pipeline.Exchange) (state, error) {
	o := &l.o
	r := x.R
	if !x.Format.Cacheable(x.Endpoint) || x.Rec.Fingerprint == "" {
		return state{}, nil
	}
	ttl := o.TTL
	if v := r.Header.Get(headerCacheTTL); v != "" {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil || n <= 0 || time.Duration(n)*time.Second > o.MaxTTL {
			return state{}, &edge.Error{Status: 400, Code: "invalid_cache_ttl",
				Message: "Invalid x-codex-cache-ttl: give a whole number of seconds from 1 to " + strconv.FormatInt(int64(o.MaxTTL/time.Second), 10) + "."}
		}
		ttl = time.Duration(n) * time.Second
	}
	enabled := o.Enabled
	if o.Policy != nil {
		pol := o.Policy(x.Key.OrgID, x.Key.ID)
		enabled = pol.Enabled
		if pol.TTL > 0 && r.Header.Get(headerCacheTTL) == "" {
			ttl = pol.TTL
		}
	}
	if !enabled {
		return state{}, nil
	}
	noCache, noStore := cacheControl(r.Header)
	if noStore {
		return state{}, nil
	}
	return state{lookup: !noCache, store: true, coalesce: !noCache, ttl: ttl, record: x.Rec.Fingerprint}, nil
}

// cacheControl reads the request's Cache-Control directives.
func cacheControl(h http.Header) (noCache, noStore bool) {
	for _, f := range h.Values("Cache-Control") {
		for _, d := range strings.Split(f, ",") {
			switch strings.ToLower(strings.TrimSpace(d)) {
			case "no-cache":
				noCache = true
			case "no-store":
				noStore = true
			}
		}
	}
	return noCache, noStore
}

// answer serves x from the cache or an identical call in flight when it
// can; otherwise it prepares st to record the fresh answer, and returns
// served false.
//
// The flight is joined before the cache is read: a request arriving just
// after another stored its answer either still finds that flight or, once
// the flight is gone, finds the entry, so there is no window in which it
// would call the provider again. Concurrent hits share one lookup.
func (l *Layer) answer(x *pipeline.Exchange, st *state) (served bool, err error) {
	key := x.Key.OrgID + "\x00" + x.Rec.Fingerprint
	if st.coalesce {
		// One flight per org and fingerprint, whatever the form: a
		// follower of the other form gets the answer rendered.
		f, leader := l.flights.Join(key)
		if !leader {
			return l.joined(x, st, f)
		}
		st.flight, st.shared = f, true
	} else {
		// A fresh answer was asked for (no-cache): this request shares no
		// older call, but identical ones arriving after it share its own,
		// so from the moment it is answered they get that answer.
		st.flight, st.shared = l.flights.Lead(key), true
	}
	x.SetCache(edge.CacheMiss)
	if st.lookup {
		if served, err := l.lookup(x, st); served {
			return true, err
		}
	}
	return false, nil
}

// joined follows the flight f another request leads; when that does not
// answer x, x asks the provider itself.
func (l *Layer) joined(x *pipeline.Exchange, st *state, f *coalesce.Flight) (bool, error) {
	if served, err := l.follow(x, st, f); served {
		l.o.Metrics.Coalesced()
		return true, err
	}
	if strings.Contains(st.record, "/") {
		// The leader's answer does not render in this form: this one
		// keeps its own entry.
		st.flight = coalesce.Solo()
	} else {
		st.store = false // the leader stores; this one asks alone
	}
	x.SetCache(edge.CacheMiss)
	return false, nil
}

// lookup answers x from the cache when its entry is there in x's form or
// renders in it.
func (l *Layer) lookup(x *pipeline.Exchange, st *state) (bool, error) {
	ctx := x.Context()
	e, err := l.o.Cache.Get(ctx, x.Key.OrgID, st.record)
	if err == nil {
		out, rerr := cache.Render(x.Format, e, x.Stream)
		if rerr != nil {
			// Cached in the other form and not renderable in this one:
			// this form keeps its own entry.
			st.record += "/" + form(x.Stream)
			if e, err = l.o.Cache.Get(ctx, x.Key.OrgID, st.record); err == nil && e.Stream != x.Stream {
				err = cache.ErrMiss
			}
			out = e
		}
		if err == nil {
			l.resolve(st, e)
			return true, serveEntry(x, out)
		}
	}
	if !errors.Is(err, cache.ErrMiss) {
		// Backend trouble: answer without the cache (counted by it).
		x.Log().Debug("cache unavailable; bypassing", "err", err)
		x.SetCache(edge.CacheBypass)
		st.store = false
	}
	return false, nil
}

// resolve hands a cached entry to the followers of st's flight.
func (l *Layer) resolve(st *state, e *cache.Entry) {
	f := st.flight
	st.flight = nil
	f.Resolve(e)
	l.flights.Forget(f)
	f.Release()
}

// serveEntry answers a cache hit in the form the request asked for.
func serveEntry(x *pipeline.Exchange, e *cache.Entry) error {
	x.SetCache(edge.CacheHit)
	writeEntry(x, e, e.NumEvents())
	accountHit(x, e)
	return nil
}

// writeEntry writes the status, content type and answer of e (for a
// stream, its first n events).
func writeEntry(x *pipeline.Exchange, e *cache.Entry, n int) {
	w := x.W
	if e.ContentType != "" {
		w.Header().Set("Content-Type", e.ContentType)
	}
	x.Rec.Status = e.Status
	if !e.Stream {
		w.Header().Set("Content-Length", strconv.Itoa(len(e.Body)))
		w.WriteHeader(e.Status)
		if _, err := w.Write(e.Body); err != nil {
			x.Rec.Status = pipeline.StatusClientClosed
		}
		return
	}
	w.WriteHeader(e.Status)
	if !writeEvents(x, e, 0, n) {
		x.Rec.Status = pipeline.StatusClientClosed
	}
}

// writeEvents writes events [from, to) of e, leaving out the usage chunk
// a client that did not ask for usage must not see.
func writeEvents(x *pipeline.Exchange, e *cache.Entry, from, to int) bool {
	w := x.W
	for i := from; i < to; i++ {
		if e.UsageOnly[i] && x.HideUsage {
			continue
		}
		if _, err := w.Write(e.Event(i)); err != nil {
			return false
		}
	}
	w.Flush()
	return true
}

// accountHit records a request served without a provider call: the tokens
// as they were, at zero cost, and the cost they saved.
func accountHit(x *pipeline.Exchange, e *cache.Entry) {
	x.Rec.Usage = e.Usage
	if e.Model != "" {
		x.Rec.Model = e.Model
	}
	x.Rec.CostNanoUSD, x.Rec.CostKnown = 0, true
	if e.CostKnown {
		x.Rec.SavedNanoUSD = e.CostNanoUSD
	}
}
