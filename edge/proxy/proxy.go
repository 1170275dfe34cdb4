// Package proxy is the edge's request path: it authenticates a client by its
// gateway key, forwards the request to the org's provider exactly as sent
// (except the credential and hop-by-hop headers), streams the answer back
// event by event, and records the request's metadata without waiting for
// the store.
package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/apikey"
	"github.com/persiv/codex/edge/coalesce"
	"github.com/persiv/codex/edge/directory"
	"github.com/persiv/codex/edge/pricing"
	"github.com/persiv/codex/edge/provider"
	"github.com/persiv/codex/edge/provider/anthropic"
	"github.com/persiv/codex/edge/provider/openai"
	"github.com/persiv/codex/edge/sse"
	"github.com/persiv/codex/edge/usage"
)

const (
	headerRequestID = "x-codex-request-id"
	headerCache     = "x-codex-cache"
)

// Resolver maps a gateway key's hash to its org.
type Resolver interface {
	Resolve(ctx context.Context, hash [32]byte) (directory.Key, error)
	// Cached returns the key if it is held in memory as valid, without
	// reading the store.
	Cached(hash [32]byte) (directory.Key, bool)
}

// Sink receives request metadata. Record must not block.
type Sink interface {
	Record(edge.RequestRecord) bool
}

// Pricer prices a response's usage.
type Pricer interface {
	CostResult(b pricing.Biller, ep provider.Endpoint, r usage.Result) (nanoUSD int64, known bool)
}

// Options configure a Proxy. Zero durations and sizes take the DESIGN §8
// defaults.
type Options struct {
	ConnectTimeout time.Duration // default 10s
	HeaderTimeout  time.Duration // until the provider's response headers; default 10m
	IdleTimeout    time.Duration // between two chunks of a response; default 5m
	MaxBodyBytes   int64         // request body limit; default 32 MiB
	// BodyTimeout bounds reading one request body; default 30s.
	BodyTimeout time.Duration
	// MaxInflightBodyBytes bounds the request-body bytes held by all
	// requests in progress together; past it a request is answered 503
	// with retry-after. Default 256 MiB.
	MaxInflightBodyBytes int64
	// AuthFailureLimit is how many failed key checks a client address may
	// make per AuthFailureWindow before keys the edge does not already
	// know are answered 429 from it; default 20 per 1m.
	AuthFailureLimit  int
	AuthFailureWindow time.Duration
	// AuthFailureClients bounds the client addresses remembered; default
	// 65536.
	AuthFailureClients int
	// AuthRejectQuantum: a well-formed key refused after its lookup is
	// answered at the next multiple of it since the request began, so
	// the time to refuse a key does not tell whether it was unknown,
	// revoked, or remembered as absent; default 5ms, comfortably above a
	// key lookup.
	AuthRejectQuantum time.Duration
	// TrustedProxies are the peers whose X-Forwarded-For names the client
	// address; none by default.
	TrustedProxies []netip.Prefix
	// MaxCaptureBytes bounds how much of a non-streamed answer is kept in
	// memory to read its usage; larger answers pass through with unknown
	// usage. Default 64 MiB.
	MaxCaptureBytes int
	// MaxEventBytes bounds one SSE event of a provider's stream, and so
	// the memory one stream holds; a larger event ends the stream with an
	// error event (code upstream_event_too_large). Default
	// DefaultMaxEventBytes.
	MaxEventBytes int
	Transport     http.RoundTripper // default: a tuned *http.Transport
	// Formats are the provider wire formats served, the first the default
	// for requests no format owns; default OpenAI then Anthropic.
	Formats provider.Formats
	Logger  *slog.Logger
	Metrics *Metrics
	// Cache is the response cache and request coalescing; off when
	// Cache.Cache is nil.
	Cache CacheOptions
}

// DefaultMaxEventBytes is the default Options.MaxEventBytes: 4 MiB, room
// for a provider's largest events (a Responses API response.completed
// repeats the whole output) while bounding what one stream can hold.
const DefaultMaxEventBytes = 4 << 20

// Proxy serves the provider-compatible routes.
type Proxy struct {
	formats provider.Formats
	keys    Resolver
	sink    Sink
	prices  Pricer
	opts    Options
	rt      http.RoundTripper
	bufs    sync.Pool // *bytes.Buffer: captured answers
	bodies  *bodyBudget
	// authFails counts failed key checks by client address.
	authFails *authLimiter
	chunks    sync.Pool // *[]byte: copy buffers for answers
	// flights are the identical requests in progress, by org and
	// fingerprint.
	flights coalesce.Group
}

// New returns a proxy; register its routes with Register.
func New(keys Resolver, sink Sink, prices Pricer, opts Options) *Proxy {
	if opts.Formats == nil {
		opts.Formats = provider.Formats{openai.Format{}, anthropic.Format{}}
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 10 * time.Second
	}
	if opts.HeaderTimeout <= 0 {
		opts.HeaderTimeout = 10 * time.Minute
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 5 * time.Minute
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 32 << 20
	}
	if opts.BodyTimeout <= 0 {
		opts.BodyTimeout = 30 * time.Second
	}
	if opts.MaxInflightBodyBytes <= 0 {
		opts.MaxInflightBodyBytes = 256 << 20
	}
	if opts.AuthFailureLimit <= 0 {
		opts.AuthFailureLimit = 20
	}
	if opts.AuthFailureWindow <= 0 {
		opts.AuthFailureWindow = time.Minute
	}
	if opts.AuthRejectQuantum <= 0 {
		opts.AuthRejectQuantum = 5 * time.Millisecond
	}
	if opts.AuthFailureClients <= 0 {
		opts.AuthFailureClients = 65536
	}
	if opts.MaxCaptureBytes <= 0 {
		opts.MaxCaptureBytes = 64 << 20
	}
	if opts.MaxEventBytes <= 0 {
		opts.MaxEventBytes = DefaultMaxEventBytes
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics(nil, nil)
	}
	if opts.Transport == nil {
		opts.Transport = NewTransport(opts.ConnectTimeout, opts.HeaderTimeout)
	}
	if opts.Cache.TTL <= 0 {
		opts.Cache.TTL = time.Hour
	}
	if opts.Cache.MaxTTL <= 0 {
		opts.Cache.MaxTTL = 7 * 24 * time.Hour
	}
	if opts.Cache.MaxEntryBytes <= 0 {
		opts.Cache.MaxEntryBytes = 4 << 20
	}
	return &Proxy{
		formats: opts.Formats,
		keys:    keys,
		sink:    sink,
		prices:  prices,
		opts:    opts,
		// The transport is used directly, not through an http.Client: the
		// edge follows no redirects, and sets no overall deadline (streams
		// last long; the header and idle timeouts bound every wait).
		rt:        opts.Transport,
		bufs:      sync.Pool{New: func() any { return new(bytes.Buffer) }},
		bodies:    &bodyBudget{max: opts.MaxInflightBodyBytes},
		authFails: newAuthLimiter(opts.AuthFailureLimit, opts.AuthFailureWindow, opts.AuthFailureClients),
		chunks:    sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }},
	}
}

// NewTransport returns the transport used towards providers: connection
// reuse sized for a busy gateway, and the connect and header timeouts.
func NewTransport(connect, header time.Duration) *http.Transport {
	d := &net.Dialer{Timeout: connect, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           d.DialContext,
		TLSHandshakeTimeout:   connect,
		ResponseHeaderTimeout: header,
		ExpectContinueTimeout: time.Second,
		MaxIdleConns:          4096,
		MaxIdleConnsPerHost:   1024,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
}

// Register adds every format's routes to e, and makes unknown routes
// answer 404 in the shape of the provider the request most likely came
// from.
func (p *Proxy) Register(e *echo.Echo) {
	for k, ms := range p.formats.Routes() {
		e.Add(k[0], k[1], p.handler(ms))
	}
	e.RouteNotFound("/*", func(c echo.Context) error {
		return writeError(c, p.formats.Owner(c.Request()), errNotFound)
	})
}

// exchange is the state of one request on its way through the edge.
type exchange struct {
	start     time.Time // when the request arrived, with the monotonic clock
	f         provider.Format
	ep        provider.Endpoint
	key       directory.Key
	body      []byte
	injected  bool // we added stream_options.include_usage for the client
	stream    bool
	rec       edge.RequestRecord
	upStart   time.Time
	upElapsed time.Duration
	cache     cacheState
}

func (p *Proxy) handler(ms []provider.Match) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		m := provider.Pick(ms, c.Request())
		x := exchange{start: start, f: m.Format, ep: m.Route.Endpoint}
		reqID := apikey.NewTimeID("req_", start)
		c.Response().Header().Set(headerRequestID, reqID)
		c.Response().Header().Set(headerCache, string(edge.CacheBypass))
		x.rec = edge.RequestRecord{ID: reqID, Time: start.UTC(), Provider: x.f.Provider(), Endpoint: string(x.ep), Cache: edge.CacheBypass}

		err := p.serve(c, &x)
		if x.cache.flight != nil {
			// The leader ended without an answer to share.
			x.failFlight(err)
		}
		if ae := (*edge.Error)(nil); errors.As(err, &ae) {
			x.rec.Status = ae.Status
			err = writeError(c, x.f, ae)
		}
		if x.rec.Status == 0 {
			x.rec.Status = c.Response().Status
		}
		x.rec.Latency = time.Since(start)
		x.rec.UpstreamLatency = x.upElapsed
		p.opts.Metrics.observe(&x.rec, x.upStart.IsZero())
		// Requests that never reached an org (bad keys) have no tenant to
		// be stored under; they are counted in metrics only.
		if x.rec.OrgID != "" {
			p.sink.Record(x.rec)
		}
		return err
	}
}

func (p *Proxy) serve(c echo.Context, x *exchange) error {
	r := c.Request()
	cred, ok := apikey.FromHeader(r.Header.Get("Authorization"), r.Header.Get("x-api-key"))
	if !ok {
		return errMissingKey
	}
	secret, err := apikey.Parse(cred)
	if err != nil {
		return errBadKey // typos rejected before any lookup
	}
	key, err := p.resolve(r, apikey.Hash(secret), x.start)
	if err != nil {
		return err
	}
	x.key = key
	x.rec.OrgID, x.rec.KeyID = key.OrgID, key.ID

	up, ok := key.Org.Upstream(x.f.Provider())
	if !ok {
		return providerNotConfigured(x.f.Provider())
	}
	if up.Credential == "" {
		return credentialUnavailable(x.f.Provider())
	}

	if r.Method == http.MethodPost {
		body, err := p.readBody(c.Response(), r)
		defer body.release()
		if err != nil {
			return err
		}
		x.body = body.bytes()
		sum, info, err := key.Org.Fingerprinter.Sum(string(x.f.Provider()), string(x.ep), x.body)
		if err != nil {
			return badJSON(err.Error())
		}
		x.rec.Fingerprint = sum.String()
		x.rec.Model = info.Model
		x.rec.Stream = info.Stream
		x.stream = info.Stream
		if x.body, x.injected, err = x.f.Rewrite(x.ep, x.body, info); err != nil {
			return badJSON(err.Error())
		}
		if err := p.planCache(r, x); err != nil {
			return err
		}
		if served, err := p.serveCached(c, x); served {
			return err
		}
	}
	return p.forward(c, x, up)
}

// resolve finds the key whose hash is hash. A key the edge holds as valid
// is answered from memory; any other is looked up, unless its client
// address made too many failed checks lately. A key refused after the
// lookup is answered at the next multiple of AuthRejectQuantum since the
// request began (see padRejection).
func (p *Proxy) resolve(r *http.Request, hash [32]byte, start time.Time) (directory.Key, error) {
	if key, ok := p.keys.Cached(hash); ok {
		return key, nil
	}
	addr, now := p.clientAddr(r), time.Now()
	if wait := p.authFails.blocked(addr, now); wait > 0 {
		p.opts.Metrics.authLimited.Inc()
		return directory.Key{}, errAuthLimited(wait)
	}
	key, err := p.keys.Resolve(r.Context(), hash)
	if errors.Is(err, directory.ErrUnknownKey) {
		p.authFails.fail(addr, now)
		p.padRejection(r.Context(), start)
		return directory.Key{}, errBadKey
	}
	if err != nil {
		p.opts.Logger.Error("key lookup failed", "err", err)
		return directory.Key{}, errStore
	}
	return key, nil
}

// hopHeaders are removed in both directions (RFC 9110 §7.6.1), with
// whatever the Connection header names.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// copyRequestHeaders copies what the client sent, minus its gateway key,
// the edge's own control headers, hop-by-hop headers, and Accept-Encoding
// (the transport negotiates compression itself, so usage stays readable).
func copyRequestHeaders(dst, src http.Header) {
	for k, vv := range src {
		switch k {
		case "Authorization", "X-Api-Key", "Host", "Content-Length", "Accept-Encoding":
			continue
		}
		if strings.HasPrefix(k, "X-Codex-") {
			continue
		}
		dst[k] = vv
	}
	removeHop(dst, src)
}

// copyResponseHeaders copies the provider's answer headers over dst, which
// holds the edge's own (x-codex-*, Strict-Transport-Security): those names
// are never taken from a provider, and neither are cookies, which would be
// set for the edge's origin, nor hop-by-hop headers (issue 13, finding 5).
// Names the provider's Connection header lists are skipped rather than
// deleted from dst, so it cannot remove one of the edge's.
func copyResponseHeaders(dst, src http.Header) {
	hop := connectionNames(src)
	for k, vv := range src {
		switch k {
		case "Strict-Transport-Security", "Set-Cookie", "Set-Cookie2",
			// hopHeaders
			"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
			"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade":
			continue
		}
		if strings.HasPrefix(k, "X-Codex-") || slices.Contains(hop, k) {
			continue
		}
		dst[k] = vv
	}
}

// connectionNames returns the header names src's Connection header lists,
// in canonical form.
func connectionNames(src http.Header) []string {
	var names []string
	for _, f := range src.Values("Connection") {
		for _, name := range strings.Split(f, ",") {
			if name = strings.TrimSpace(name); name != "" {
				names = append(names, http.CanonicalHeaderKey(name))
			}
		}
	}
	return names
}

func removeHop(dst, src http.Header) {
	for _, f := range src.Values("Connection") {
		for _, name := range strings.Split(f, ",") {
			if name = strings.TrimSpace(name); name != "" {
				dst.Del(name)
			}
		}
	}
	for _, h := range hopHeaders {
		dst.Del(h)
	}
}

func (p *Proxy) forward(c echo.Context, x *exchange, up directory.Upstream) error {
	r := c.Request()
	// The upstream call ends when the client goes away, or when the idle
	// timer fires between two chunks of the answer.
	ctx, cancel := context.WithCancel(r.Context())
	if f := x.cache.flight; x.cache.shared {
		// The call is shared with followers: the leader's client leaving
		// cancels it only when no follower is left.
		cancel()
		ctx, cancel = context.WithCancel(context.WithoutCancel(r.Context()))
		f.SetCancel(cancel)
		stop := context.AfterFunc(r.Context(), f.Release)
		defer func() {
			if stop() {
				f.Release()
			}
		}()
	}
	defer cancel()

	target := up.BaseURL + r.URL.Path
	if r.URL.RawQuery != "" {
		target += "?" + r.URL.RawQuery
	}
	var body io.Reader = http.NoBody
	if x.body != nil {
		body = bytes.NewReader(x.body)
	}
	ureq, err := http.NewRequestWithContext(ctx, r.Method, target, body)
	if err != nil {
		p.opts.Logger.Error("bad upstream URL", "provider", up.Provider, "org", x.key.OrgID)
		return errUnreach
	}
	ureq.ContentLength = int64(len(x.body))
	copyRequestHeaders(ureq.Header, r.Header)
	x.f.SetCredential(ureq.Header, up.Credential)

	x.upStart = time.Now()
	resp, err := p.rt.RoundTrip(ureq)
	if err != nil {
		x.upElapsed = time.Since(x.upStart)
		return p.upstreamError(r.Context(), x, err)
	}
	defer resp.Body.Close()

	idle := newIdleTimer(p.opts.IdleTimeout, cancel)
	defer idle.stop()
	rb := &idleReader{r: resp.Body, t: idle}

	h := c.Response().Header()
	copyResponseHeaders(h, resp.Header)
	if resp.Uncompressed {
		h.Del("Content-Length")
	}
	x.rec.Status = resp.StatusCode

	isStream := strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream")
	if f := x.cache.flight; f != nil {
		f.Start(resp.StatusCode, resp.Header.Get("Content-Type"), isStream)
	}
	if isStream {
		return p.copyStream(c, x, resp, rb, idle)
	}
	return p.copyBody(c, x, resp, rb, idle)
}

// upstreamError turns a failed provider call into the edge's answer.
func (p *Proxy) upstreamError(clientCtx context.Context, x *exchange, err error) error {
	if clientCtx.Err() != nil {
		x.rec.Status = statusClientClosed
		p.opts.Metrics.upstreamError(x.f.Provider(), "client_closed")
		return nil
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		p.opts.Metrics.upstreamError(x.f.Provider(), "timeout")
		return errTimeout
	}
	p.opts.Metrics.upstreamError(x.f.Provider(), "unreachable")
	p.opts.Logger.Warn("provider unreachable", "provider", x.f.Provider(), "org", x.key.OrgID, "err", withoutURL(err))
	return errUnreach
}

// statusClientClosed records a request whose client went away (nginx's 499).
const statusClientClosed = 499

// copyBody forwards a non-streamed answer, keeping a copy (up to a bound)
// to read its usage.
func (p *Proxy) copyBody(c echo.Context, x *exchange, resp *http.Response, rb io.Reader, idle *idleTimer) error {
	w := c.Response()
	w.WriteHeader(resp.StatusCode)
	capture := p.bufs.Get().(*bytes.Buffer)
	capture.Reset()
	defer p.bufs.Put(capture)
	if resp.ContentLength > 0 && resp.ContentLength <= int64(p.opts.MaxCaptureBytes) {
		capture.Grow(int(resp.ContentLength))
	}
	complete, gone := true, false
	cp := p.chunks.Get().(*[]byte)
	defer p.chunks.Put(cp)
	chunk := *cp
	for {
		n, err := rb.Read(chunk)
		if n > 0 {
			if capture.Len()+n <= p.opts.MaxCaptureBytes {
				capture.Write(chunk[:n])
			} else {
				complete = false
			}
			if !gone {
				if _, werr := w.Write(chunk[:n]); werr != nil {
					x.rec.Status = statusClientClosed
					if !x.cache.shared {
						complete = false
						break
					}
					gone = true // keep reading for the followers
				}
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil && complete && resp.ContentLength >= 0 && int64(capture.Len()) == resp.ContentLength {
			// Every announced byte arrived (the client, done reading, may
			// have cancelled the call before the final EOF): complete.
			break
		}
		if err != nil {
			x.upElapsed = time.Since(x.upStart)
			return p.midResponseError(c, x, idle, err)
		}
	}
	x.upElapsed = time.Since(x.upStart)
	if complete && resp.StatusCode < 300 {
		// An answer that is not JSON leaves usage unknown, as it should.
		res, _ := x.f.ParseUsage(x.ep, capture.Bytes())
		p.account(x, res)
	}
	if x.cache.flight != nil {
		if complete {
			p.finishFlight(x, resp.StatusCode, bytes.Clone(capture.Bytes()))
		} else {
			x.failFlight(coalesce.ErrRetry)
		}
	}
	return nil
}

// midResponseError handles a failure after the status line was sent: the
// only thing left is to end the response, and record why.
func (p *Proxy) midResponseError(c echo.Context, x *exchange, idle *idleTimer, err error) error {
	switch {
	case idle.fired.Load():
		x.failFlight(errIdle)
		x.rec.Status = errIdle.Status
		p.opts.Metrics.upstreamError(x.f.Provider(), "idle_timeout")
		if x.stream {
			p.writeStreamError(c, x, errIdle)
		}
	case errors.Is(err, sse.ErrEventTooLarge):
		// Said plainly: the provider answered, the edge refused one event.
		e := eventTooLarge(p.opts.MaxEventBytes)
		x.failFlight(e)
		x.rec.Status = e.Status
		p.opts.Metrics.upstreamError(x.f.Provider(), "event_too_large")
		p.opts.Logger.Warn("provider stream event over the limit", "provider", x.f.Provider(), "org", x.key.OrgID, "limit_bytes", p.opts.MaxEventBytes)
		p.writeStreamError(c, x, e)
	case c.Request().Context().Err() != nil:
		x.failFlight(coalesce.ErrRetry) // whoever joined since asks again
		x.rec.Status = statusClientClosed
		p.opts.Metrics.upstreamError(x.f.Provider(), "client_closed")
	default:
		x.failFlight(errUnreach)
		x.rec.Status = errUnreach.Status
		p.opts.Metrics.upstreamError(x.f.Provider(), "broken_response")
		p.opts.Logger.Warn("provider response broken off", "provider", x.f.Provider(), "org", x.key.OrgID, "err", withoutURL(err))
		if x.stream {
			p.writeStreamError(c, x, errUnreach)
		}
	}
	return nil
}

// writeStreamError ends an SSE stream with an error event in the
// provider's own stream error format.
func (p *Proxy) writeStreamError(c echo.Context, x *exchange, e *edge.Error) {
	name, data := x.f.StreamError(e, x.rec.ID)
	w := c.Response()
	sse.Write(w, name, data)
	w.Flush()
}

// copyStream forwards an SSE answer event by event, flushing each one as it
// arrives, and reads usage from the events as they pass.
func (p *Proxy) copyStream(c echo.Context, x *exchange, resp *http.Response, rb io.Reader, idle *idleTimer) error {
	x.stream = true
	w := c.Response()
	w.WriteHeader(resp.StatusCode)
	w.Flush()
	track := x.f.NewStream(x.ep)
	rd := sse.NewReaderSize(rb, p.opts.MaxEventBytes)
	f := x.cache.flight
	recorded, overflow, gone, ended := 0, false, false, false
	for {
		ev, err := rd.Next()
		arrived := time.Now()
		if err == io.EOF || (err != nil && ended) {
			// After the provider's final event nothing is missing, even
			// if the client, done reading, cancelled the call before EOF.
			break
		}
		if err != nil {
			x.upElapsed = time.Since(x.upStart)
			return p.midResponseError(c, x, idle, err)
		}
		ended = x.f.IsFinal(x.ep, ev.Name, ev.Data)
		usageOnly := track.Observe(string(ev.Name), ev.Data)
		if f != nil && !overflow {
			// Recorded for followers and the cache, up to the capture bound.
			if recorded += len(ev.Raw); recorded > p.opts.MaxCaptureBytes {
				overflow = true
			} else {
				f.AddEvent(ev.Raw, usageOnly)
			}
		}
		if (usageOnly && x.injected) || gone {
			continue // the usage chunk the client did not ask for
		}
		if _, err := w.Write(ev.Raw); err != nil {
			x.rec.Status = statusClientClosed
			if !x.cache.shared {
				x.upElapsed = time.Since(x.upStart)
				x.failFlight(coalesce.ErrRetry)
				return nil
			}
			gone = true // keep reading for the followers
			continue
		}
		w.Flush()
		p.opts.Metrics.chunkForward.Observe(time.Since(arrived).Seconds())
	}
	x.upElapsed = time.Since(x.upStart)
	if resp.StatusCode < 300 {
		p.account(x, track.Result())
	}
	if f != nil {
		if overflow {
			x.failFlight(errUnreach)
		} else {
			p.finishFlight(x, resp.StatusCode, nil)
		}
	}
	return nil
}

// account stores the usage and its cost on the record.
func (p *Proxy) account(x *exchange, res usage.Result) {
	x.rec.Usage = res.Usage
	if res.Model != "" {
		x.rec.Model = res.Model // the served snapshot prices more exactly
	} else {
		res.Model = x.rec.Model
	}
	if p.prices != nil {
		x.rec.CostNanoUSD, x.rec.CostKnown = p.prices.CostResult(x.f, x.ep, res)
	}
}

// idleTimer cancels the upstream call when no chunk arrives in time.
type idleTimer struct {
	d     time.Duration
	t     *time.Timer
	fired atomic.Bool
}

func newIdleTimer(d time.Duration, cancel context.CancelFunc) *idleTimer {
	it := &idleTimer{d: d}
	it.t = time.AfterFunc(d, func() {
		it.fired.Store(true)
		cancel()
	})
	return it
}

func (it *idleTimer) reset() { it.t.Reset(it.d) }
func (it *idleTimer) stop()  { it.t.Stop() }

// idleReader restarts the idle timer whenever the provider sends bytes.
type idleReader struct {
	r io.Reader
	t *idleTimer
}

func (ir *idleReader) Read(b []byte) (int, error) {
	n, err := ir.r.Read(b)
	if n > 0 {
		ir.t.reset()
	}
	return n, err
}

// withoutURL drops the request URL from a transport error before it is
// logged: a client's query string may carry anything, secrets included.
func withoutURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
