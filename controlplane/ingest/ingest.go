// Package ingest consumes usage batches from JetStream, one stream per org
// (CODEX_USAGE_<org_id>): it validates each message strictly, checks its subject against the batch and the enrolled
// edge, stores it exactly once, then acknowledges it. Invalid messages are
// terminated (never redelivered), counted by reason and kept out of the
// store.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/persiv/codex/controlplane"
	"github.com/persiv/codex/shared/wire"
)

// Stream and consumer names.
const (
	// StreamPrefix starts every org's stream: CODEX_USAGE_<org_id>.
	StreamPrefix = "CODEX_USAGE_"
	// LegacyStreamName is the one stream all orgs shared before: Setup
	// retires it (see Setup).
	LegacyStreamName = "CODEX_USAGE"
	ConsumerName     = "ingest"
)

// legacyRetiredSubject is what the legacy stream listens on once retired:
// no edge may publish there.
const legacyRetiredSubject = "codex.usage.retired"

// StreamName is the stream of org's edges.
func StreamName(orgID string) string { return StreamPrefix + orgID }

// Defaults of Limits.
const (
	// DefaultDuplicates is the de-duplication window: short, because
	// JetStream de-duplicates Nats-Msg-Ids across a whole stream and an
	// edge may set any Msg-Id; the store's (edge_id, seq) key makes
	// re-sends harmless anyway.
	DefaultDuplicates = 100 * time.Millisecond
	// DefaultMaxAge bounds how long a batch may wait for the ingest.
	DefaultMaxAge = 7 * 24 * time.Hour
	// DefaultMaxBytes bounds an org's stream.
	DefaultMaxBytes = 16 << 20
	// DefaultMaxPendingPerEdge bounds the batches of one edge waiting in
	// its org's stream.
	DefaultMaxPendingPerEdge = 256
	// DefaultReplicas is one copy of a stream: the embedded server's only
	// choice.
	DefaultReplicas = 1
	// DefaultAckWait is how long a delivered batch waits for its
	// acknowledgement before it is delivered again.
	DefaultAckWait = 30 * time.Second
)

// Limits bound the per-org streams, so that no edge can fill the control
// plane's disk. Past a bound the stream refuses new batches (the edge keeps
// them spooled and retries) rather than drop stored ones. Zero fields take
// their defaults.
type Limits struct {
	// MaxBytes bounds an org's stream; the whole of it is reserved against
	// the ingest account's JetStream storage. Default DefaultMaxBytes
	// (16 MiB).
	MaxBytes int64
	// MaxPendingPerEdge bounds the batches one edge may have waiting in
	// its org's stream (each edge has its own subject): past it that
	// edge's publishes are refused, not its org's other edges'. Default
	// DefaultMaxPendingPerEdge (256).
	MaxPendingPerEdge int64
	// MaxAge is how long a batch may wait in its stream. Default
	// DefaultMaxAge (168h).
	MaxAge time.Duration
	// Duplicates is the de-duplication window. Default DefaultDuplicates
	// (100ms); JetStream refuses less.
	Duplicates time.Duration
	// Replicas is how many copies of an org's stream a NATS cluster
	// keeps, 1 to 5 (JetStream's most): 3 survives the loss of a node. The ingest
	// consumer follows its stream (its own Replicas is left 0). More than
	// 1 needs a JetStream cluster. Default DefaultReplicas (1).
	Replicas int
	// AckWait is how long a batch delivered to an instance of the
	// control plane waits for its acknowledgement before it is delivered
	// again, to any instance: the batches an instance held when it (or
	// its NATS node, or an acknowledgement) was lost wait that long. It
	// must exceed the time to store a batch, or batches are delivered
	// twice (and stored once). Default DefaultAckWait (30s).
	AckWait time.Duration
}

func (l Limits) withDefaults() Limits {
	if l.MaxAge <= 0 {
		l.MaxAge = DefaultMaxAge
	}
	if l.Duplicates <= 0 {
		l.Duplicates = DefaultDuplicates
	}
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.MaxPendingPerEdge <= 0 {
		l.MaxPendingPerEdge = DefaultMaxPendingPerEdge
	}
	if l.Replicas <= 0 {
		l.Replicas = DefaultReplicas
	}
	if l.AckWait <= 0 {
		l.AckWait = DefaultAckWait
	}
	return l
}

// StreamConfig is the work-queue stream of org's edges. Each org has its
// own, so the de-duplication of Nats-Msg-Ids, which JetStream applies
// across a stream, cannot let one org's edge drop another org's batch.
func StreamConfig(orgID string, l Limits) jetstream.StreamConfig {
	l = l.withDefaults()
	return jetstream.StreamConfig{
		Name:       StreamName(orgID),
		Subjects:   []string{wire.SubjectPrefix + "." + orgID + ".*"},
		Retention:  jetstream.WorkQueuePolicy,
		Storage:    jetstream.FileStorage,
		MaxAge:     l.MaxAge,
		Duplicates: l.Duplicates,
		MaxBytes:   l.MaxBytes,
		MaxMsgSize: int32(min(wire.MaxBatchBytes, l.MaxBytes)),
		// Refuse, never drop: a stored batch was acknowledged, and its
		// edge no longer holds it.
		Discard:              jetstream.DiscardNew,
		MaxMsgsPerSubject:    l.MaxPendingPerEdge,
		DiscardNewPerSubject: true,
		Replicas:             l.Replicas,
	}
}

// ConsumerConfig is the durable pull consumer of an org's stream, shared
// by every instance of the control plane: each message goes to one of
// them. Its Replicas is 0, so it keeps as many copies as its stream, and
// follows the stream when the stream's replicas change.
func ConsumerConfig(l Limits) jetstream.ConsumerConfig {
	l = l.withDefaults()
	return jetstream.ConsumerConfig{
		Durable:       ConsumerName,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       l.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: 1000,
	}
}

// pullBatch is how many messages one org's consumer pulls at a time.
const pullBatch = 64

// pullHeartbeat is how often the server confirms a waiting pull request.
// A pull request can be lost with no answer, as when its consumer's
// leader moves to another node of a cluster while it is on its way: the
// instance pulls again once two heartbeats are missed (10s), where the
// client's default (half the 30s expiry) left the org's batches waiting
// for 30s. Each waiting consumer costs the server one small message per
// heartbeat.
const pullHeartbeat = 5 * time.Second

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

// DefaultReconcileEvery is Ingester.ReconcileEvery's default: an org
// enrolled through another instance is consumed here within it. The
// enrolling instance consumes its stream at once meanwhile.
const DefaultReconcileEvery = 10 * time.Second

// reconcileTimeout bounds one Reconcile of Run's.
const reconcileTimeout = 30 * time.Second

// setupTimeout bounds the making or update of an org's stream and
// consumer, longer than JetStream's default API timeout (5s): in a
// cluster, a new stream or one whose replicas change waits for its raft
// group to elect a leader.
const setupTimeout = 30 * time.Second

// Stats are the ingest's counters since start.
type Stats struct {
	Stored, Duplicates, Errors int64
	Rejected                   map[string]int64
}

// Ingester validates and stores batches.
type Ingester struct {
	Store controlplane.Store
	// JS is the control plane's own JetStream context in the ingest
	// account: it manages the streams and consumes them.
	JS     jetstream.JetStream
	Limits Limits
	Log    *slog.Logger
	Now    func() time.Time // defaults to time.Now
	// ReconcileEvery is how often Run looks for org streams made or
	// deleted through another instance of the control plane (see
	// Reconcile). Default DefaultReconcileEvery (10s); negative: never,
	// for an instance alone on its embedded server.
	ReconcileEvery time.Duration

	stored, duplicates, errs atomic.Int64
	rejected                 [numReasons]atomic.Int64

	mu        sync.Mutex
	consumers map[string]jetstream.Consumer       // by org, set up
	consuming map[string]jetstream.ConsumeContext // by org, while Run runs
	runCtx    context.Context                     // non-nil while Run runs
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
	if err := in.settle(ctx, msg, false); err != nil {
		in.Log.Error("settle message", "err", err)
	}
}

// settle handles one message and acknowledges, terminates or (for a
// failure worth retrying) naks it. With sync, acknowledgements wait for
// the server, and a failure to store is returned.
func (in *Ingester) settle(ctx context.Context, msg jetstream.Msg, sync bool) error {
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
			return fmt.Errorf("terminate message: %w", err)
		}
	case err != nil:
		in.errs.Add(1)
		in.Log.Error("usage batch not stored, will retry", "subject", msg.Subject(), "err", err)
		if nerr := msg.NakWithDelay(5 * time.Second); nerr != nil {
			in.Log.Error("nak message", "err", nerr)
		}
		if sync {
			return err
		}
	default:
		if stored {
			in.stored.Add(1)
		} else {
			in.duplicates.Add(1)
		}
		// Acked only once stored: a crash before this line, or a lost
		// ack, redelivers, and the store counts the batch once.
		ack := msg.Ack
		if sync {
			ack = func() error { return msg.DoubleAck(ctx) }
		}
		if err := ack(); err != nil {
			return fmt.Errorf("ack message: %w", err)
		}
	}
	return nil
}

// Setup prepares JetStream for the ingest before Run: it retires the
// legacy shared stream and sets up the stream of each org in orgs (those
// whose edges may publish), updating an existing stream to the current
// Limits.
//
// Retiring the legacy stream (an upgrade from a version with one stream
// for all orgs) moves it off the usage subjects first, so that from then
// on edges publish into their org's stream, then stores what it still
// holds and deletes it. An interrupted retirement is resumed by the next
// Setup; a batch that cannot be stored now leaves the stream in place and
// fails Setup.
func (in *Ingester) Setup(ctx context.Context, orgs []string) error {
	if in.Log == nil {
		in.Log = slog.New(slog.DiscardHandler)
	}
	legacy, err := in.JS.Stream(ctx, LegacyStreamName)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		legacy = nil
	case err != nil:
		return fmt.Errorf("legacy usage stream: %w", err)
	default:
		cfg := legacy.CachedInfo().Config
		if !slices.Equal(cfg.Subjects, []string{legacyRetiredSubject}) {
			cfg.Subjects = []string{legacyRetiredSubject}
			if _, err := in.JS.UpdateStream(ctx, cfg); err != nil {
				return fmt.Errorf("retire the legacy usage stream: %w", err)
			}
		}
	}
	for _, org := range orgs {
		if err := in.EnsureOrg(ctx, org); err != nil {
			return err
		}
	}
	if legacy != nil {
		return in.drainLegacy(ctx, legacy)
	}
	return nil
}

// drainLegacy stores what the retired legacy stream holds, then deletes it.
func (in *Ingester) drainLegacy(ctx context.Context, stream jetstream.Stream) error {
	// Its old consumer filtered on the usage subjects, which the stream no
	// longer has: drain through an unfiltered one instead.
	names := stream.ConsumerNames(ctx)
	for name := range names.Name() {
		if err := stream.DeleteConsumer(ctx, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("retire the legacy usage stream: %w", err)
		}
	}
	if err := names.Err(); err != nil {
		return fmt.Errorf("retire the legacy usage stream: %w", err)
	}
	cons, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "retire", AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second})
	if err != nil {
		return fmt.Errorf("retire the legacy usage stream: %w", err)
	}
	var drained int
	for {
		info, err := cons.Info(ctx)
		if err != nil {
			return fmt.Errorf("retire the legacy usage stream: %w", err)
		}
		if info.NumPending == 0 && info.NumAckPending == 0 {
			break
		}
		batch, err := cons.Fetch(pullBatch, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return fmt.Errorf("retire the legacy usage stream: %w", err)
		}
		for msg := range batch.Messages() {
			if err := in.settle(ctx, msg, true); err != nil {
				return fmt.Errorf("retire the legacy usage stream: %w", err)
			}
			drained++
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return fmt.Errorf("retire the legacy usage stream: %w", err)
		}
	}
	if err := in.JS.DeleteStream(ctx, LegacyStreamName); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("retire the legacy usage stream: %w", err)
	}
	in.Log.Info("legacy usage stream retired", "stream", LegacyStreamName, "batches", drained)
	return nil
}

// EnsureOrg creates or updates org's stream and its consumer, and consumes
// it while Run runs. Enrollment calls it before an edge of org receives
// its credentials, so no edge publishes where no stream listens.
func (in *Ingester) EnsureOrg(ctx context.Context, orgID string) error {
	if !wire.IDChars.Valid(orgID) {
		return fmt.Errorf("org id %q is not a valid subject token", orgID)
	}
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	stream, err := in.JS.CreateOrUpdateStream(ctx, StreamConfig(orgID, in.Limits))
	if err != nil {
		return fmt.Errorf("usage stream of %s: %w", orgID, err)
	}
	cons, err := stream.CreateOrUpdateConsumer(ctx, ConsumerConfig(in.Limits))
	if err != nil {
		return fmt.Errorf("usage consumer of %s: %w", orgID, err)
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.consumers == nil {
		in.consumers = map[string]jetstream.Consumer{}
	}
	in.consumers[orgID] = cons
	if in.runCtx != nil {
		return in.consumeLocked(orgID, cons)
	}
	return nil
}

// DeleteOrg stops consuming org's stream and deletes it, with whatever
// batches it still held: the org is being deleted. A stream already gone
// is no error.
func (in *Ingester) DeleteOrg(ctx context.Context, orgID string) error {
	if !wire.IDChars.Valid(orgID) {
		return fmt.Errorf("org id %q is not a valid subject token", orgID)
	}
	in.mu.Lock()
	cc := in.consuming[orgID]
	delete(in.consuming, orgID)
	delete(in.consumers, orgID)
	in.mu.Unlock()
	if cc != nil {
		cc.Stop()
	}
	if err := in.JS.DeleteStream(ctx, StreamName(orgID)); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("delete the usage stream of %s: %w", orgID, err)
	}
	return nil
}

func (in *Ingester) consumeLocked(orgID string, cons jetstream.Consumer) error {
	if _, ok := in.consuming[orgID]; ok {
		return nil
	}
	ctx := in.runCtx
	cc, err := cons.Consume(func(msg jetstream.Msg) { in.process(ctx, msg) },
		jetstream.PullMaxMessages(pullBatch),
		jetstream.PullHeartbeat(pullHeartbeat),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			in.Log.Debug("consume", "org_id", orgID, "err", err)
		}))
	if err != nil {
		return fmt.Errorf("consume usage of %s: %w", orgID, err)
	}
	in.consuming[orgID] = cc
	return nil
}

// Reconcile brings the streams this instance consumes in line with the
// org streams JetStream holds: several instances share the streams and
// their durable consumer, and an org is enrolled (or deleted) through one
// of them. It consumes, while Run runs, every org stream not consumed yet
// and stops consuming those deleted. Run calls it every ReconcileEvery.
func (in *Ingester) Reconcile(ctx context.Context) error {
	in.mu.Lock()
	known := maps.Clone(in.consumers)
	in.mu.Unlock()
	listed := map[string]bool{}
	names := in.JS.StreamNames(ctx)
	for name := range names.Name() {
		if org, ok := strings.CutPrefix(name, StreamPrefix); ok && wire.IDChars.Valid(org) {
			listed[org] = true
		}
	}
	if err := names.Err(); err != nil {
		return fmt.Errorf("list the usage streams: %w", err)
	}
	var errs []error
	for org := range listed {
		if _, ok := known[org]; ok {
			continue
		}
		// The consumer is made if the enrolling instance has not made it
		// yet; its config is the same everywhere.
		cctx, cancel := context.WithTimeout(ctx, setupTimeout)
		cons, err := in.JS.CreateOrUpdateConsumer(cctx, StreamName(org), ConsumerConfig(in.Limits))
		cancel()
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue // deleted since listed
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("usage consumer of %s: %w", org, err))
			continue
		}
		in.mu.Lock()
		if _, ok := in.consumers[org]; !ok { // else EnsureOrg came first
			if in.consumers == nil {
				in.consumers = map[string]jetstream.Consumer{}
			}
			in.consumers[org] = cons
			if in.runCtx != nil {
				err = in.consumeLocked(org, cons)
			}
			in.Log.Info("consuming the usage stream of an org set up elsewhere", "org_id", org)
		}
		in.mu.Unlock()
		if err != nil {
			errs = append(errs, err)
		}
	}
	for org, cons := range known {
		if listed[org] {
			continue
		}
		// A stream made after the listing is missing from it: only one
		// that is gone now was deleted.
		if _, err := in.JS.Stream(ctx, StreamName(org)); !errors.Is(err, jetstream.ErrStreamNotFound) {
			if err != nil {
				errs = append(errs, fmt.Errorf("usage stream of %s: %w", org, err))
			}
			continue
		}
		in.mu.Lock()
		// Unless EnsureOrg made the stream again meanwhile.
		var cc jetstream.ConsumeContext
		if in.consumers[org] == cons {
			cc = in.consuming[org]
			delete(in.consumers, org)
			delete(in.consuming, org)
		}
		in.mu.Unlock()
		if cc != nil {
			cc.Stop()
			in.Log.Info("stopped consuming the deleted usage stream of an org", "org_id", org)
		}
	}
	return errors.Join(errs...)
}

// Consumed lists the orgs whose streams this instance consumes (or will,
// once Run runs), sorted.
func (in *Ingester) Consumed() []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return slices.Sorted(maps.Keys(in.consumers))
}

// reconcile runs Reconcile now and every ReconcileEvery until ctx ends.
func (in *Ingester) reconcile(ctx context.Context) {
	every := in.ReconcileEvery
	if every < 0 {
		return
	}
	if every == 0 {
		every = DefaultReconcileEvery
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, reconcileTimeout)
		err := in.Reconcile(rctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			in.Log.Error("reconcile the usage streams", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Run consumes every org's stream set up by Setup or EnsureOrg, before or
// while it runs, and those Reconcile finds, until ctx ends.
func (in *Ingester) Run(ctx context.Context) error {
	if in.Log == nil {
		in.Log = slog.New(slog.DiscardHandler)
	}
	in.mu.Lock()
	if in.runCtx != nil {
		in.mu.Unlock()
		return errors.New("ingest: Run is already running")
	}
	in.runCtx, in.consuming = ctx, map[string]jetstream.ConsumeContext{}
	var err error
	for org, cons := range in.consumers {
		if err = in.consumeLocked(org, cons); err != nil {
			break
		}
	}
	in.mu.Unlock()
	if err == nil {
		reconciled := make(chan struct{})
		go func() { defer close(reconciled); in.reconcile(ctx) }()
		<-ctx.Done()
		<-reconciled
	}
	in.mu.Lock()
	consuming := in.consuming
	in.runCtx, in.consuming = nil, nil
	in.mu.Unlock()
	for _, cc := range consuming {
		cc.Drain()
	}
	for _, cc := range consuming {
		<-cc.Closed()
	}
	return err
}
