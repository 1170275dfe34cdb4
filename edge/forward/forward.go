// Package forward is the innermost stage of the request path: it sends the
// request to the org's provider exactly as the client sent it (except the
// credential and hop-by-hop headers), and passes the answer back as it
// arrives, a stream event by event, reading its usage on the way and
// handing a copy to the exchange's Recorder (the cache's, when it has one).
package forward

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/pipeline"
	"github.com/persiv/codex/edge/pricing"
	"github.com/persiv/codex/edge/provider"
	"github.com/persiv/codex/edge/usage"
)

// Pricer prices an answer's usage.
type Pricer interface {
	CostResult(b pricing.Biller, ep provider.Endpoint, r usage.Result) (nanoUSD int64, known bool)
}

// Options configure a Forwarder.
type Options struct {
	ConnectTimeout time.Duration // CODEX_UPSTREAM_CONNECT_TIMEOUT
	HeaderTimeout  time.Duration // until the provider's response headers (CODEX_UPSTREAM_HEADER_TIMEOUT)
	IdleTimeout    time.Duration // between two chunks of an answer (CODEX_UPSTREAM_IDLE_TIMEOUT)
	// MaxCaptureBytes bounds how much of a non-streamed answer is kept in
	// memory to read its usage; larger answers pass through with unknown
	// usage.
	MaxCaptureBytes int
	// MaxEventBytes bounds one SSE event of a provider's stream, and so
	// the memory one stream holds; a larger event ends the stream with an
	// error event (code upstream_event_too_large).
	MaxEventBytes int
	// Transport calls the providers; nil: NewTransport with the timeouts.
	Transport http.RoundTripper
	// Prices prices answers; nil leaves their cost unknown.
	Prices  Pricer
	Metrics *pipeline.Metrics
}

// DefaultOptions are the DESIGN §8 defaults.
func DefaultOptions() Options {
	return Options{
		ConnectTimeout:  10 * time.Second,
		HeaderTimeout:   10 * time.Minute,
		IdleTimeout:     5 * time.Minute,
		MaxCaptureBytes: 64 << 20,
		// Room for a provider's largest events (a Responses API
		// response.completed repeats the whole output).
		MaxEventBytes: 4 << 20,
	}
}

// withDefaults fills o's zero fields from DefaultOptions.
func (o Options) withDefaults() Options {
	d := DefaultOptions()
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = d.ConnectTimeout
	}
	if o.HeaderTimeout <= 0 {
		o.HeaderTimeout = d.HeaderTimeout
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = d.IdleTimeout
	}
	if o.MaxCaptureBytes <= 0 {
		o.MaxCaptureBytes = d.MaxCaptureBytes
	}
	if o.MaxEventBytes <= 0 {
		o.MaxEventBytes = d.MaxEventBytes
	}
	if o.Transport == nil {
		o.Transport = NewTransport(o.ConnectTimeout, o.HeaderTimeout)
	}
	if o.Metrics == nil {
		o.Metrics = pipeline.NewMetrics(nil, nil)
	}
	return o
}

// Forwarder calls the provider; it is the last handler of the chain.
type Forwarder struct {
	opts   Options
	bufs   sync.Pool // *bytes.Buffer: captured answers
	chunks sync.Pool // *[]byte: copy buffers
}

// New returns a Forwarder; zero fields of opts take DefaultOptions.
func New(opts Options) *Forwarder {
	f := &Forwarder{opts: opts.withDefaults()}
	f.bufs.New = func() any { return new(bytes.Buffer) }
	f.chunks.New = func() any { b := make([]byte, 32<<10); return &b }
	return f
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

var (
	errTimeout = &edge.Error{Status: 504, Code: "upstream_timeout", Message: "The provider did not answer in time."}
	errIdle    = &edge.Error{Status: 504, Code: "upstream_timeout", Message: "The provider's stream stalled longer than the edge's idle timeout."}
	// ErrUnreachable is the answer when the provider cannot be reached or
	// broke its answer off.
	ErrUnreachable = &edge.Error{Status: 502, Code: "upstream_unreachable", Message: "The provider could not be reached."}
	// errIncomplete ends a recording whose answer did not arrive whole:
	// whoever waited for it asks the provider again.
	errIncomplete = errors.New("answer incomplete")
)

func eventTooLarge(limit int) *edge.Error {
	return &edge.Error{Status: 502, Code: "upstream_event_too_large",
		Message: "The provider sent a stream event larger than the edge's limit of " + strconv.Itoa(limit) + " bytes; the stream was ended."}
}

// Serve calls the provider and passes its answer on.
func (fw *Forwarder) Serve(x *pipeline.Exchange) error {
	rec := x.Recorder
	if rec == nil {
		rec = nobody{}
	}
	// The call ends when the client goes away (unless others share it), or
	// when the idle timer fires between two chunks of the answer.
	ctx, cancel := rec.Detach(x.Context())
	defer cancel()
	ureq, err := fw.request(ctx, x)
	if err != nil {
		return err
	}
	x.UpstreamStart = time.Now()
	resp, err := fw.opts.Transport.RoundTrip(ureq)
	if err != nil {
		x.UpstreamElapsed = time.Since(x.UpstreamStart)
		return fw.upstreamError(x, err)
	}
	defer resp.Body.Close()

	idle := newIdleTimer(fw.opts.IdleTimeout, cancel)
	defer idle.stop()
	h := x.W.Header()
	copyResponseHeaders(h, resp.Header)
	if resp.Uncompressed {
		h.Del("Content-Length")
	}
	x.Rec.Status = resp.StatusCode
	a := &answer{fw: fw, x: x, rec: rec, resp: resp, body: &idleReader{r: resp.Body, t: idle}, idle: idle}
	isStream := strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream")
	rec.Start(resp.StatusCode, resp.Header.Get("Content-Type"), isStream)
	if isStream {
		return a.stream()
	}
	return a.json()
}

// request builds the upstream request.
func (fw *Forwarder) request(ctx context.Context, x *pipeline.Exchange) (*http.Request, error) {
	r := x.R
	base := x.Upstream.BaseURL
	if base == "" {
		base = x.Format.DefaultBaseURL()
	}
	target := base + r.URL.Path
	if r.URL.RawQuery != "" {
		target += "?" + r.URL.RawQuery
	}
	var body io.Reader = http.NoBody
	if x.Body != nil {
		body = bytes.NewReader(x.Body)
	}
	ureq, err := http.NewRequestWithContext(ctx, r.Method, target, body)
	if err != nil {
		x.Log().Error("bad upstream URL", "provider", x.Upstream.Provider)
		return nil, ErrUnreachable
	}
	ureq.ContentLength = int64(len(x.Body))
	copyRequestHeaders(ureq.Header, r.Header)
	x.Format.SetCredential(ureq.Header, x.Upstream.Credential)
	return ureq, nil
}

// upstreamError turns a failed provider call into the edge's answer.
func (fw *Forwarder) upstreamError(x *pipeline.Exchange, err error) error {
	p := x.Format.Provider()
	if x.Context().Err() != nil {
		x.Rec.Status = pipeline.StatusClientClosed
		fw.opts.Metrics.UpstreamError(p, "client_closed")
		return nil
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		fw.opts.Metrics.UpstreamError(p, "timeout")
		return errTimeout
	}
	fw.opts.Metrics.UpstreamError(p, "unreachable")
	x.Log().Warn("provider unreachable", "provider", p, "err", withoutURL(err))
	return ErrUnreachable
}

// settle stores the answer's usage and its cost on the record.
func (fw *Forwarder) settle(x *pipeline.Exchange, res usage.Result) {
	x.Rec.Usage = res.Usage
	if res.Model != "" {
		x.Rec.Model = res.Model // the served snapshot prices more exactly
	} else {
		res.Model = x.Rec.Model
	}
	if fw.opts.Prices != nil {
		x.Rec.CostNanoUSD, x.Rec.CostKnown = fw.opts.Prices.CostResult(x.Format, x.Endpoint, res)
	}
}

// nobody is the Recorder of an answer no one else waits for.
type nobody struct{}

func (nobody) Detach(client context.Context) (context.Context, context.CancelFunc) {
	return context.WithCancel(client)
}
func (nobody) Shared() bool               { return false }
func (nobody) Start(int, string, bool)    {}
func (nobody) Event([]byte, bool)         {}
func (nobody) End(body []byte, err error) {}

// withoutURL drops the request URL from a transport error before it is
// logged: a client's query string may carry anything, secrets included.
func withoutURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
