// Package intake reads a request's body, within the edge's limits, and
// learns what the rest of the request path needs of it: its fingerprint
// (for the cache), its model, whether it asks for a stream, and the body
// to send upstream (the provider's format may rewrite it). It injects the
// memories the key carries (DESIGN §10), and the fingerprint covers their
// digest: a changed memory never serves an answer made under the old one.
package intake

import (
	"net/http"
	"strings"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/directory"
	"github.com/persiv/codex/edge/memory"
	"github.com/persiv/codex/edge/pipeline"
)

// Options configure the intake stage.
type Options struct {
	// MaxBodyBytes is the request body limit (CODEX_MAX_BODY_BYTES).
	MaxBodyBytes int64
	// BodyTimeout bounds reading one request body (CODEX_BODY_TIMEOUT).
	BodyTimeout time.Duration
	// MaxInflightBodyBytes bounds the request-body bytes held by all
	// requests in progress together; past it a request is answered 503
	// with retry-after (CODEX_MAX_INFLIGHT_BODY_BYTES).
	MaxInflightBodyBytes int64
	Metrics              *pipeline.Metrics
}

// DefaultOptions are the DESIGN §8 defaults.
func DefaultOptions() Options {
	return Options{MaxBodyBytes: 32 << 20, BodyTimeout: 30 * time.Second, MaxInflightBodyBytes: 256 << 20}
}

func (o Options) withDefaults() Options {
	d := DefaultOptions()
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = d.MaxBodyBytes
	}
	if o.BodyTimeout <= 0 {
		o.BodyTimeout = d.BodyTimeout
	}
	if o.MaxInflightBodyBytes <= 0 {
		o.MaxInflightBodyBytes = d.MaxInflightBodyBytes
	}
	if o.Metrics == nil {
		o.Metrics = pipeline.NewMetrics(nil, nil)
	}
	return o
}

var errTooLarge = &edge.Error{Status: 413, Code: "request_too_large", Message: "Request body exceeds the edge's limit (CODEX_MAX_BODY_BYTES)."}

func badJSON(detail string) *edge.Error {
	return &edge.Error{Status: 400, Code: "invalid_json", Message: "Malformed JSON body: " + detail}
}

// intake is the stage's state: the limits and the bodies held.
type intake struct {
	o      Options
	bodies *bodyBudget
}

// Stage reads the body of POST requests into x.Body (with the key's
// memories injected, unless the client sent x-codex-memory: off) and sets
// x.Stream, x.HideUsage, the x-codex-memory header and the record's
// fingerprint, model, stream flag and memories.
func Stage(o Options) pipeline.Stage {
	o = o.withDefaults()
	in := &intake{o: o, bodies: &bodyBudget{max: o.MaxInflightBodyBytes}}
	return func(next pipeline.Handler) pipeline.Handler {
		return pipeline.HandlerFunc(func(x *pipeline.Exchange) error {
			if x.R.Method != http.MethodPost {
				return next.Serve(x)
			}
			body, err := in.readBody(x.W, x.R)
			// The body is in use until the whole answer has been passed on.
			defer body.release()
			if err != nil {
				return err
			}
			if err := in.learn(x, body.bytes()); err != nil {
				return err
			}
			return next.Serve(x)
		})
	}
}

// learn reads what the request path needs of body.
func (in *intake) learn(x *pipeline.Exchange, body []byte) error {
	sent, mem, injectErr := injectMemory(x, body)
	var extra []byte
	if mem != nil {
		extra = mem.Digest[:]
	}
	// The fingerprint is of the client's body and the digest of the
	// memories put in (not of the body sent, which would hash their text
	// on every request): a changed memory changes it all the same.
	sum, info, err := x.Key.Org.Fingerprinter.SumWith(string(x.Format.Provider()), string(x.Endpoint), extra, body)
	if err != nil {
		return badJSON(err.Error())
	}
	if injectErr != nil {
		return badJSON(injectErr.Error())
	}
	if mem != nil {
		x.W.Header()[memory.Header] = mem.Header
		x.Rec.MemoryID, x.Rec.MemoryTokensEstimate, x.Rec.Memories = mem.Label, mem.Tokens, mem.Uses
	}
	x.Rec.Fingerprint = sum.String()
	x.Rec.Model = info.Model
	x.Rec.Stream = info.Stream
	x.Stream = info.Stream
	x.OutputCap = info.MaxOutputTokens
	if x.Body, x.HideUsage, err = x.Format.Rewrite(x.Endpoint, sent, info); err != nil {
		return badJSON(err.Error())
	}
	return nil
}

// injectMemory returns the body with the key's memories in front of its
// system instruction, and those memories; the body as it is, and nil, when
// the key carries none, the client sent x-codex-memory: off, or the
// endpoint takes no system instruction.
func injectMemory(x *pipeline.Exchange, body []byte) ([]byte, *directory.Memory, error) {
	m := x.Key.Memory
	if m == nil || strings.EqualFold(strings.TrimSpace(x.R.Header.Get(memory.Header)), "off") {
		return body, nil, nil
	}
	out, ok, err := x.Format.InjectSystem(x.Endpoint, body, m.System)
	if err != nil {
		return body, nil, err
	}
	if !ok {
		return body, nil, nil
	}
	return out, m, nil
}
