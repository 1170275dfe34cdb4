// Package proxy assembles the edge's request path from its stages and
// serves it on the provider-compatible routes. Read a request from top to
// bottom in the stages, outermost first (see edge/ARCHITECTURE.md):
//
//	account → auth → audit → ratelimit → intake → caching → budget → forward
//
// account (package account) records the request once it is answered;
// auth checks the gateway key; audit records the request in its org's
// audit log (refusals included); ratelimit applies the org's and key's
// rate limits (rpm charged here, so a cache hit counts; tpm when the
// answer ended); intake reads and fingerprints the body; caching answers
// from the cache or an identical call in flight; budget reserves the worst
// case in the org's and key's budgets before the provider call and settles
// it after (so a cache hit reserves nothing); forward calls the provider
// and passes its answer on.
package proxy

import (
	"log/slog"
	"net/http"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/account"
	"github.com/persiv/codex/edge/apikey"
	"github.com/persiv/codex/edge/audit"
	"github.com/persiv/codex/edge/auth"
	"github.com/persiv/codex/edge/budget"
	"github.com/persiv/codex/edge/caching"
	"github.com/persiv/codex/edge/forward"
	"github.com/persiv/codex/edge/intake"
	"github.com/persiv/codex/edge/pipeline"
	"github.com/persiv/codex/edge/provider"
	"github.com/persiv/codex/edge/provider/anthropic"
	"github.com/persiv/codex/edge/provider/openai"
	"github.com/persiv/codex/edge/ratelimit"
)

// Options configure a Proxy: each stage's settings. Zero durations and
// sizes take the DESIGN §8 defaults (the stages' DefaultOptions).
type Options struct {
	ConnectTimeout time.Duration // until connected to the provider
	HeaderTimeout  time.Duration // until the provider's response headers
	IdleTimeout    time.Duration // between two chunks of a response
	MaxBodyBytes   int64         // request body limit
	// BodyTimeout bounds reading one request body.
	BodyTimeout time.Duration
	// MaxInflightBodyBytes bounds the request-body bytes held by all
	// requests in progress together.
	MaxInflightBodyBytes int64
	// AuthFailureLimit is how many failed key checks a client address may
	// make per AuthFailureWindow before keys the edge does not already
	// know are answered 429 from it.
	AuthFailureLimit  int
	AuthFailureWindow time.Duration
	// AuthFailureClients bounds the client addresses remembered.
	AuthFailureClients int
	// AuthRejectQuantum: see auth.Options.RejectQuantum.
	AuthRejectQuantum time.Duration
	// TrustedProxies are the peers whose X-Forwarded-For names the client
	// address; none by default.
	TrustedProxies []netip.Prefix
	// MaxCaptureBytes bounds how much of a non-streamed answer is kept in
	// memory to read its usage, and of a stream shared with identical
	// requests.
	MaxCaptureBytes int
	// MaxEventBytes bounds one SSE event of a provider's stream.
	MaxEventBytes int
	Transport     http.RoundTripper // default: forward.NewTransport
	// Formats are the provider wire formats served, the first the default
	// for requests no format owns; default OpenAI then Anthropic.
	Formats provider.Formats
	Logger  *slog.Logger
	Metrics *pipeline.Metrics
	// Cache is the response cache and request coalescing; off when
	// Cache.Cache is nil.
	Cache caching.Options
	// RateLimit applies the orgs' and keys' rate limits; off when
	// RateLimit.Limits is nil.
	RateLimit ratelimit.Options
	// Budget applies the orgs' and keys' budgets; off when Budget.Budgets
	// is nil.
	Budget budget.Options
	// Audit is the audit log; off when Audit.Writer is nil.
	Audit audit.Options
}

// DefaultFormats are the provider wire formats the edge serves: OpenAI
// (also the shape of answers to requests no format owns), then Anthropic.
func DefaultFormats() provider.Formats {
	return provider.Formats{openai.Format{}, anthropic.Format{}}
}

var errNotFound = &edge.Error{Status: 404, Code: "unknown_url", Message: "Unknown route. The edge serves /v1/chat/completions, /v1/responses, /v1/embeddings, /v1/models, /v1/messages and /v1/messages/count_tokens."}

// Proxy serves the provider-compatible routes.
type Proxy struct {
	formats provider.Formats
	log     *slog.Logger
	chain   pipeline.Handler
	// busy counts the requests being handled: a client may have its
	// answer before the stages' work after it is done (see forward).
	busy atomic.Int64
}

// Busy returns how many requests are being handled, the work after their
// answer included.
func (p *Proxy) Busy() int64 { return p.busy.Load() }

// New returns a proxy; register its routes with Register.
func New(keys auth.Resolver, sink account.Sink, prices forward.Pricer, opts Options) *Proxy {
	if opts.Formats == nil {
		opts.Formats = DefaultFormats()
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Metrics == nil {
		opts.Metrics = pipeline.NewMetrics(nil, nil)
	}
	m := opts.Metrics
	fw := forward.New(forward.Options{
		ConnectTimeout: opts.ConnectTimeout, HeaderTimeout: opts.HeaderTimeout, IdleTimeout: opts.IdleTimeout,
		MaxCaptureBytes: opts.MaxCaptureBytes, MaxEventBytes: opts.MaxEventBytes,
		Transport: opts.Transport, Prices: prices, Metrics: m,
	})
	co := opts.Cache
	co.Metrics = m
	if co.MaxShareBytes <= 0 {
		co.MaxShareBytes = opts.MaxCaptureBytes
	}
	chain := pipeline.Chain(fw,
		account.Stage(sink, m),
		auth.Stage(keys, auth.Options{
			FailureLimit: opts.AuthFailureLimit, FailureWindow: opts.AuthFailureWindow, FailureClients: opts.AuthFailureClients,
			RejectQuantum: opts.AuthRejectQuantum, TrustedProxies: opts.TrustedProxies, Metrics: m,
		}),
		audit.Stage(opts.Audit),
		rateLimit(opts.RateLimit, m),
		intake.Stage(intake.Options{MaxBodyBytes: opts.MaxBodyBytes, BodyTimeout: opts.BodyTimeout, MaxInflightBodyBytes: opts.MaxInflightBodyBytes, Metrics: m}),
		caching.Stage(co),
		budgets(opts.Budget, m),
	)
	return &Proxy{formats: opts.Formats, log: opts.Logger, chain: chain}
}

// Register adds every format's routes to e, and makes unknown routes
// answer 404 in the shape of the provider the request most likely came
// from.
func (p *Proxy) Register(e *echo.Echo) {
	for k, ms := range p.formats.Routes() {
		e.Add(k[0], k[1], p.handler(ms))
	}
	e.RouteNotFound("/*", func(c echo.Context) error {
		return pipeline.WriteError(c.Response(), p.formats.Owner(c.Request()), errNotFound, "")
	})
}

// handler starts an exchange for a request to one of the routes ms and
// passes it down the chain.
func (p *Proxy) handler(ms []provider.Match) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		r := c.Request()
		m := provider.Pick(ms, r)
		x := pipeline.New(c.Response(), r, m.Format, m.Route.Endpoint, apikey.NewTimeID("req_", start), start, p.log)
		p.busy.Add(1)
		defer p.busy.Add(-1)
		return p.chain.Serve(x)
	}
}

// rateLimit is the rate-limit stage, or none without limits.
func rateLimit(o ratelimit.Options, m *pipeline.Metrics) pipeline.Stage {
	if o.Limits == nil {
		return func(next pipeline.Handler) pipeline.Handler { return next }
	}
	o.Metrics = m
	return ratelimit.Stage(o)
}

// budgets is the budget stage, or none without budgets.
func budgets(o budget.Options, m *pipeline.Metrics) pipeline.Stage {
	if o.Budgets == nil {
		return func(next pipeline.Handler) pipeline.Handler { return next }
	}
	o.Metrics = m
	return budget.Stage(o)
}
