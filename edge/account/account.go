// Package account is the outermost stage of the request path: once a
// request is answered, by a later stage or by an error one of them
// returned, it completes the request's record (status, latency), counts
// it in the metrics, and hands it to the sink (metadata and telemetry).
package account

import (
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/pipeline"
)

// Sink receives request records. Record must not block.
type Sink interface {
	Record(edge.RequestRecord) bool
}

// Stage answers the errors of the stages after it in the route's provider
// shape, then records the request.
func Stage(sink Sink, m *pipeline.Metrics) pipeline.Stage {
	return func(next pipeline.Handler) pipeline.Handler {
		return pipeline.HandlerFunc(func(x *pipeline.Exchange) error {
			err := pipeline.Settle(x, next.Serve(x))
			x.Rec.Latency = time.Since(x.Start)
			x.Rec.UpstreamLatency = x.UpstreamElapsed
			m.Observe(&x.Rec, x.UpstreamStart.IsZero())
			// Requests that never reached an org (bad keys) have no tenant
			// to be stored under; they are counted in metrics only.
			if x.Rec.OrgID != "" {
				sink.Record(x.Rec)
			}
			return err
		})
	}
}
