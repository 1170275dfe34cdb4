package audit

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/queue"
)

// WriterOptions configure a Writer. Zero values take DefaultWriterOptions'.
type WriterOptions struct {
	// Queue bounds the events of levels none and hash waiting to be
	// written (CODEX_AUDIT_QUEUE); a full queue drops events, counts and
	// logs every drop.
	Queue    int
	Batch    int           // events per transaction
	Flush    time.Duration // longest an event waits for its batch
	MaxRetry time.Duration // longest back-off between failed writes
	// CommitTimeout bounds one synchronous write of level-full events;
	// past it their requests are answered 503 audit_unavailable.
	CommitTimeout time.Duration
	Logger        *slog.Logger
}

// DefaultWriterOptions: a queue of 65536 events written in batches of
// 1000 at least every 250ms, failed writes retried at most 5s apart, and a
// synchronous write given 10s.
func DefaultWriterOptions() WriterOptions {
	return WriterOptions{Queue: 65536, Batch: 1000, Flush: 250 * time.Millisecond, MaxRetry: 5 * time.Second, CommitTimeout: 10 * time.Second}
}

// FailFast is how long after a failed synchronous write requests at level
// full are refused at once (503 audit_unavailable), without calling the
// provider: while the store is known to be down, no answer is produced
// that could not be recorded. After it, requests try the store again.
const FailFast = time.Second

// Writer stores audit events: those of levels none and hash from a
// bounded queue, in batches, off the request path (as package metadata
// does); those of level full at once, in group commits: each request
// waits until its event is stored, and the requests waiting together
// share one transaction.
type Writer struct {
	// queued stores the events of levels none and hash.
	queued *queue.Writer[entry]
	store  Appender
	opts   WriterOptions

	commits  chan *pending // unbuffered: a send succeeds only when taken
	failedAt atomic.Int64  // unix nanos of the last failed commit; 0 after a success

	committed, commitFailures atomic.Int64
	commitBatches             atomic.Int64

	stop     chan struct{}
	done     chan struct{} // closed when commitLoop ends
	stopOnce sync.Once
}

// entry is a request's event waiting in the queue: the record and the
// digests, so that the request path neither encodes nor allocates.
type entry struct {
	rec       edge.RequestRecord
	level     edge.AuditLevel
	req, resp [32]byte // at level hash
}

// pending is a level-full event waiting for its commit.
type pending struct {
	ev   edge.AuditEvent
	done chan error
}

// NewWriter starts a writer; Close drains it.
func NewWriter(st Appender, opts WriterOptions) *Writer {
	def := DefaultWriterOptions()
	if opts.Queue <= 0 {
		opts.Queue = def.Queue
	}
	if opts.Batch <= 0 {
		opts.Batch = def.Batch
	}
	if opts.Flush <= 0 {
		opts.Flush = def.Flush
	}
	if opts.MaxRetry <= 0 {
		opts.MaxRetry = def.MaxRetry
	}
	if opts.CommitTimeout <= 0 {
		opts.CommitTimeout = def.CommitTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	w := &Writer{
		store:   st,
		opts:    opts,
		commits: make(chan *pending),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	w.queued = queue.NewWriter(w.writeQueued, queue.WriterOptions{
		What: "audit events", Setting: "CODEX_AUDIT_QUEUE",
		Queue: opts.Queue, Batch: opts.Batch, Flush: opts.Flush, MaxRetry: opts.MaxRetry, Logger: opts.Logger,
	})
	go w.commitLoop()
	return w
}

// record queues a none or hash event without blocking; false when the
// queue was full and it was dropped (and counted).
func (w *Writer) record(e *entry) bool { return w.queued.Push(*e) }

// writeQueued stores a batch of queued events: the request path left
// their encoding to here.
func (w *Writer) writeQueued(ctx context.Context, batch []entry) error {
	evs := make([]edge.AuditEvent, 0, len(batch))
	for i := range batch {
		e := &batch[i]
		var req, resp []byte
		if e.level == edge.AuditHash {
			req, resp = e.req[:], e.resp[:]
		}
		ev, err := event(requestMeta(&e.rec, e.level), req, resp, nil)
		if err != nil {
			w.opts.Logger.Error("audit event not encodable; dropped", "err", err)
			continue
		}
		evs = append(evs, ev)
	}
	return w.store.AppendAudit(ctx, evs)
}

var errClosed = errors.New("audit writer closed")

// commit stores a level-full event before returning: nil means it is in
// the store (committed).
func (w *Writer) commit(ctx context.Context, ev edge.AuditEvent) error {
	p := &pending{ev: ev, done: make(chan error, 1)}
	select {
	case w.commits <- p:
	case <-w.stop:
		return errClosed
	}
	// Once taken, the commit is waited for even if the client left: its
	// outcome decides what the edge records and answers.
	return <-p.done
}

// failing reports whether a commit failed within FailFast and none
// succeeded since.
func (w *Writer) failing() bool {
	at := w.failedAt.Load()
	return at != 0 && time.Since(time.Unix(0, at)) < FailFast
}

// commitLoop writes level-full events as they come: one, plus every other
// one waiting at that moment, in one transaction.
func (w *Writer) commitLoop() {
	defer close(w.done)
	for {
		var batch []*pending
		select {
		case p := <-w.commits:
			batch = append(batch, p)
		case <-w.stop:
			return
		}
	more:
		for len(batch) < w.opts.Batch {
			select {
			case p := <-w.commits:
				batch = append(batch, p)
			default:
				break more
			}
		}
		evs := make([]edge.AuditEvent, len(batch))
		for i, p := range batch {
			evs[i] = p.ev
		}
		ctx, cancel := context.WithTimeout(context.Background(), w.opts.CommitTimeout)
		w.commitBatches.Add(1)
		err := w.store.AppendAudit(ctx, evs)
		cancel()
		if err != nil {
			w.commitFailures.Add(int64(len(batch)))
			if w.failedAt.Swap(time.Now().UnixNano()) == 0 {
				w.opts.Logger.Error("audit store unavailable: requests at level full are answered 503 audit_unavailable", "err", err)
			}
		} else {
			w.committed.Add(int64(len(batch)))
			if w.failedAt.Swap(0) != 0 {
				w.opts.Logger.Info("audit store available again")
			}
		}
		for _, p := range batch {
			p.done <- err
		}
	}
}

// Dropped is the number of events dropped because the queue was full.
func (w *Writer) Dropped() int64 { return w.queued.Dropped() }

// Written is the number of queued events stored.
func (w *Writer) Written() int64 { return w.queued.Written() }

// Committed is the number of level-full events stored synchronously, and
// CommitFailures those that could not be (their requests got 503).
func (w *Writer) Committed() int64      { return w.committed.Load() }
func (w *Writer) CommitFailures() int64 { return w.commitFailures.Load() }

// CommitBatches is the number of synchronous writes (transactions) the
// level-full events took: Committed/CommitBatches events share one.
func (w *Writer) CommitBatches() int64 { return w.commitBatches.Load() }

// Depth is the number of queued events not yet written.
func (w *Writer) Depth() int { return w.queued.Depth() }

// Capacity is the queue length.
func (w *Writer) Capacity() int { return w.queued.Capacity() }

// Healthy reports whether the last writes, queued and synchronous,
// succeeded.
func (w *Writer) Healthy() bool { return w.queued.Healthy() && w.failedAt.Load() == 0 }

// Close stops accepting work and writes what is queued, giving up when ctx
// ends.
func (w *Writer) Close(ctx context.Context) error {
	w.stopOnce.Do(func() { close(w.stop) })
	select {
	case <-w.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return w.queued.Close(ctx)
}
