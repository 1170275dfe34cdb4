// Package ingest consumes usage batches from JetStream: it validates each
// message strictly, checks its subject against the batch and the enrolled
// edge, stores it exactly once, then acknowledges it. Invalid messages are
// terminated (never redelivered), counted by reason and kept out of the
// store.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/persiv/codex/controlplane"
	"github.com/persiv/codex/shared/wire"
)

// Stream and consumer names.
const (
	StreamName   = "CODEX_USAGE"
	ConsumerName = "ingest"
)

// StreamConfig is the work-queue stream edges publish into. The duplicate
// window drops re-sent Nats-Msg-Ids; the store's (edge_id, seq) key covers
// re-sends outside it.
func StreamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:       StreamName,
		Subjects:   []string{wire.SubjectPrefix + ".>"},
		Retention:  jetstream.WorkQueuePolicy,
		Storage:    jetstream.FileStorage,
		MaxAge:     7 * 24 * time.Hour,
		Duplicates: 10 * time.Minute,
		MaxMsgSize: wire.MaxBatchBytes,
		Discard:    jetstream.DiscardOld,
	}
}

// ConsumerConfig is the durable pull consumer of the ingest.
func ConsumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       ConsumerName,
		FilterSubject: wire.SubjectPrefix + ".>",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxDeliver:    -1,
		MaxAckPending: 1000,
	}
}

// Setup creates or updates the stream and the durable consumer.
func Setup(ctx context.Context, js jetstream.JetStream) (jetstream.Consumer, error) {
	stream, err := js.CreateOrUpdateStream(ctx, StreamConfig())
	if err != nil {
		return nil, fmt.Errorf("usage stream: %w", err)
	}
	cons, err := stream.CreateOrUpdateConsumer(ctx, ConsumerConfig())
	if err != nil {
		return nil, fmt.Errorf("usage consumer: %w", err)
	}
	return cons, nil
}

// Reason is why a message was rejected.
type Reason int

const (
	ReasonMalformed   Reason = iota // failed strict decoding or validation
	ReasonSubject                   // subject is not codex.usage.v1.<org>.<edge>
	ReasonMismatch                  // batch org/edge differ from the subject's
	ReasonUnknownEdge               // no such edge in the subject's org
	ReasonRevoked                   // the edge is revoked
	ReasonMsgID                     // Nats-Msg-Id is not <edge_id>:<seq>
	ReasonFuture                    // the window ends beyond MaxClockSkew from now
	numReasons
)

var reasonNames = [numReasons]string{"malformed", "subject", "mismatch", "unknown_edge", "revoked", "msg_id", "future"}

func (r Reason) String() string { return reasonNames[r] }

// RejectError is returned by Handle for a message that must not be
// retried.
type RejectError struct {
	Reason Reason
	Err    error
}

func (e *RejectError) Error() string { return "rejected (" + e.Reason.String() + "): " + e.Err.Error() }
func (e *RejectError) Unwrap() error { return e.Err }

// MaxClockSkew is how far in the future a batch's window may end: an edge
// with a wrong clock must not write rows that a dashboard shows ahead.
const MaxClockSkew = 10 * time.Minute

// Stats are the ingest's counters since start.
type Stats struct {
	Stored, Duplicates, Errors int64
	Rejected                   map[string]int64
}

// Ingester validates and stores batches.
type Ingester struct {
	Store controlplane.Store
	Log   *slog.Logger
	Now   func() time.Time // defaults to time.Now

	stored, duplicates, errs atomic.Int64
	rejected                 [numReasons]atomic.Int64
}

// Stats returns a snapshot of the counters.
func (in *Ingester) Stats() Stats {
	s := Stats{Stored: in.stored.Load(), Duplicates: in.duplicates.Load(), Errors: in.errs.Load(), Rejected: map[string]int64{}}
	for i := range in.rejected {
		s.Rejected[Reason(i).String()] = in.rejected[i].Load()
	}
	return s
}

func reject(r Reason, err error) error { return &RejectError{Reason: r, Err: err} }

// Handle processes one message. It returns (true, nil) when the batch was
// stored, (false, nil) for a duplicate, a *RejectError for a message that
// must be terminated, and any other error for a failure worth retrying.
func (in *Ingester) Handle(ctx context.Context, subject, msgID string, data []byte) (bool, error) {
	orgID, edgeID, err := wire.ParseSubject(subject)
	if err != nil {
		return false, reject(ReasonSubject, err)
	}
	b, err := wire.Decode(data)
	if err != nil {
		return false, reject(ReasonMalformed, err)
	}
	if b.OrgID != orgID || b.EdgeID != edgeID {
		return false, reject(ReasonMismatch, errors.New("batch org or edge differs from the subject"))
	}
	if msgID != "" && msgID != wire.MsgID(b.EdgeID, b.Seq) {
		return false, reject(ReasonMsgID, errors.New("Nats-Msg-Id is not <edge_id>:<seq>"))
	}
	now := time.Now
	if in.Now != nil {
		now = in.Now
	}
	if b.WindowEnd.After(now().Add(MaxClockSkew)) {
		return false, reject(ReasonFuture, errors.New("window ends in the future"))
	}
	edge, err := in.Store.Edge(ctx, orgID, edgeID)
	if errors.Is(err, controlplane.ErrNotFound) {
		return false, reject(ReasonUnknownEdge, err)
	}
	if err != nil {
		return false, fmt.Errorf("look up edge: %w", err)
	}
	if edge.Revoked() {
		return false, reject(ReasonRevoked, errors.New("edge revoked"))
	}
	stored, err := in.Store.IngestBatch(ctx, b, now().UTC())
	if err != nil {
		return false, fmt.Errorf("store batch: %w", err)
	}
	return stored, nil
}

// process handles one JetStream message and settles it.
func (in *Ingester) process(ctx context.Context, msg jetstream.Msg) {
	// A message being handled is finished even when Run is stopping.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
	defer cancel()
	stored, err := in.Handle(ctx, msg.Subject(), msg.Headers().Get(jetstream.MsgIDHeader), msg.Data())
	var rej *RejectError
	switch {
	case errors.As(err, &rej):
		in.rejected[rej.Reason].Add(1)
		// Subject and reason only: the payload is not logged.
		in.Log.Warn("usage batch rejected", "subject", msg.Subject(), "reason", rej.Reason.String(), "detail", rej.Err.Error())
		if err := msg.Term(); err != nil {
			in.Log.Error("terminate message", "err", err)
		}
	case err != nil:
		in.errs.Add(1)
		in.Log.Error("usage batch not stored, will retry", "subject", msg.Subject(), "err", err)
		if err := msg.NakWithDelay(5 * time.Second); err != nil {
			in.Log.Error("nak message", "err", err)
		}
	default:
		if stored {
			in.stored.Add(1)
		} else {
			in.duplicates.Add(1)
		}
		// Acked only once stored: a crash before this line, or a lost
		// ack, redelivers, and the store counts the batch once.
		if err := msg.Ack(); err != nil {
			in.Log.Error("ack message", "err", err)
		}
	}
}

// Run consumes until ctx ends.
func (in *Ingester) Run(ctx context.Context, cons jetstream.Consumer) error {
	if in.Log == nil {
		in.Log = slog.New(slog.DiscardHandler)
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) { in.process(ctx, msg) },
		jetstream.PullMaxMessages(256),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			in.Log.Debug("consume", "err", err)
		}))
	if err != nil {
		return fmt.Errorf("consume usage: %w", err)
	}
	<-ctx.Done()
	cc.Drain()
	<-cc.Closed()
	return nil
}
