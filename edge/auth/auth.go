// Package auth is the request path's first check: the client's gateway key
// must name an active key, and the key's org must have the route's
// provider configured with a credential the edge can use.
package auth

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/apikey"
	"github.com/persiv/codex/edge/directory"
	"github.com/persiv/codex/edge/pipeline"
)

// Resolver maps a gateway key's hash to its key and org.
type Resolver interface {
	Resolve(ctx context.Context, hash [32]byte) (directory.Key, error)
	// Cached returns the key if it is held in memory as valid, without
	// reading the store.
	Cached(hash [32]byte) (directory.Key, bool)
}

// Options configure the auth stage.
type Options struct {
	// FailureLimit is how many failed key checks a client address may
	// make per FailureWindow before keys the edge does not already know
	// are answered 429 from it (CODEX_AUTH_FAILURE_LIMIT).
	FailureLimit  int
	FailureWindow time.Duration
	// FailureClients bounds the client addresses remembered
	// (CODEX_AUTH_FAILURE_CLIENTS).
	FailureClients int
	// RejectQuantum: a well-formed key refused after its lookup is
	// answered at the next multiple of it since the request began, so the
	// time to refuse a key does not tell whether it was unknown, revoked,
	// or remembered as absent; comfortably above a key lookup.
	RejectQuantum time.Duration
	// TrustedProxies are the peers whose X-Forwarded-For names the client
	// address (CODEX_TRUSTED_PROXIES).
	TrustedProxies []netip.Prefix
	Metrics        *pipeline.Metrics
}

// DefaultOptions are the DESIGN §8 defaults.
func DefaultOptions() Options {
	return Options{FailureLimit: 20, FailureWindow: time.Minute, FailureClients: 65536, RejectQuantum: 5 * time.Millisecond}
}

func (o Options) withDefaults() Options {
	d := DefaultOptions()
	if o.FailureLimit <= 0 {
		o.FailureLimit = d.FailureLimit
	}
	if o.FailureWindow <= 0 {
		o.FailureWindow = d.FailureWindow
	}
	if o.FailureClients <= 0 {
		o.FailureClients = d.FailureClients
	}
	if o.RejectQuantum <= 0 {
		o.RejectQuantum = d.RejectQuantum
	}
	if o.Metrics == nil {
		o.Metrics = pipeline.NewMetrics(nil, nil)
	}
	return o
}

var (
	errMissingKey = &edge.Error{Status: 401, Code: "invalid_api_key", Message: "Missing gateway key: send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'."}
	errBadKey     = &edge.Error{Status: 401, Code: "invalid_api_key", Message: "Invalid gateway key: it is malformed, unknown or revoked."}
	errStore      = &edge.Error{Status: 503, Code: "store_unavailable", Message: "The gateway cannot verify keys right now; retry shortly."}
)

func providerNotConfigured(p edge.Provider) *edge.Error {
	return &edge.Error{Status: 403, Code: "provider_not_configured", Message: "This org has no " + string(p) + " provider configured on the edge."}
}

func credentialUnavailable(p edge.Provider) *edge.Error {
	return &edge.Error{Status: 503, Code: "provider_credential_unavailable", Message: "The org's " + string(p) + " credential is not available on the edge; set it again with 'codex-edge providers set'."}
}

// authenticator is the auth stage's state: the keys and the failed
// checks by client address.
type authenticator struct {
	keys  Resolver
	o     Options
	fails *limiter
}

// Stage authenticates the client and sets x.Key and x.Upstream.
func Stage(keys Resolver, o Options) pipeline.Stage {
	o = o.withDefaults()
	a := &authenticator{keys: keys, o: o, fails: newLimiter(o.FailureLimit, o.FailureWindow, o.FailureClients)}
	return func(next pipeline.Handler) pipeline.Handler {
		return pipeline.HandlerFunc(func(x *pipeline.Exchange) error {
			if err := a.authenticate(x); err != nil {
				return err
			}
			return next.Serve(x)
		})
	}
}

func (a *authenticator) authenticate(x *pipeline.Exchange) error {
	r := x.R
	cred, ok := apikey.FromHeader(r.Header.Get("Authorization"), r.Header.Get("x-api-key"))
	if !ok {
		return errMissingKey
	}
	secret, err := apikey.Parse(cred)
	if err != nil {
		return errBadKey // typos rejected before any lookup
	}
	key, err := a.resolve(x, apikey.Hash(secret))
	if err != nil {
		return err
	}
	x.Key = key
	x.Rec.OrgID, x.Rec.KeyID = key.OrgID, key.ID

	p := x.Format.Provider()
	up, ok := key.Org.Upstream(p)
	if !ok {
		return providerNotConfigured(p)
	}
	if up.Credential == "" {
		return credentialUnavailable(p)
	}
	x.Upstream = up
	return nil
}

// resolve finds the key whose hash is hash. A key the edge holds as valid
// is answered from memory; any other is looked up, unless its client
// address made too many failed checks lately. A key refused after the
// lookup is answered at the next multiple of RejectQuantum since the
// request began (see padRejection).
func (a *authenticator) resolve(x *pipeline.Exchange, hash [32]byte) (directory.Key, error) {
	if key, ok := a.keys.Cached(hash); ok {
		return key, nil
	}
	addr, now := clientAddr(x.R, a.o.TrustedProxies), time.Now()
	if wait := a.fails.blocked(addr, now); wait > 0 {
		a.o.Metrics.AuthLimited()
		return directory.Key{}, errLimited(wait)
	}
	key, err := a.keys.Resolve(x.Context(), hash)
	if errors.Is(err, directory.ErrUnknownKey) {
		a.fails.fail(addr, now)
		padRejection(x.Context(), x.Start, a.o.RejectQuantum)
		return directory.Key{}, errBadKey
	}
	if err != nil {
		x.Log().Error("key lookup failed", "err", err)
		return directory.Key{}, errStore
	}
	return key, nil
}
