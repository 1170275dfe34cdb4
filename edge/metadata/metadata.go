// Package metadata writes request metadata to the store off the request
// path: records go into a bounded queue and a single writer stores them in
// batches. A full queue drops the record, counts the drop and logs it; a
// failing store is retried with back-off while the queue absorbs the load,
// so the request path never waits for the database.
package metadata

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/queue"
)

// Inserter is the part of the store the writer needs.
type Inserter interface {
	InsertRequests(ctx context.Context, recs []edge.RequestRecord) error
}

// Options configure a Writer. Zero values take DefaultOptions'.
type Options struct {
	Queue    int           // queue length
	Batch    int           // records per transaction
	Flush    time.Duration // longest wait before a partial batch is written
	MaxRetry time.Duration // longest back-off between failed writes
	Logger   *slog.Logger
	// Observe, if set, is told about every batch: its size, how long the
	// write took and whether it failed. It feeds the Prometheus metrics.
	Observe func(n int, took time.Duration, err error)
}

// DefaultOptions returns the defaults New fills in for zero fields: a
// queue of 65536 records, batches of 1000 written at least every 250ms,
// and failed writes retried at most 5s apart.
func DefaultOptions() Options {
	return Options{Queue: 65536, Batch: 1000, Flush: 250 * time.Millisecond, MaxRetry: 5 * time.Second}
}

// Writer queues records and writes them in batches.
type Writer struct {
	store Inserter
	opts  Options
	q     *queue.Queue[edge.RequestRecord]

	dropped     atomic.Int64
	written     atomic.Int64
	healthy     atomic.Bool
	lastDropLog atomic.Int64 // unix nanos; rate-limits the drop warning

	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

// New starts a writer; Close drains it.
func New(store Inserter, opts Options) *Writer {
	def := DefaultOptions()
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
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	w := &Writer{
		store: store,
		opts:  opts,
		q:     queue.New[edge.RequestRecord](opts.Queue, opts.Batch),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	w.healthy.Store(true)
	go w.run()
	return w
}

// Record queues rec without blocking. It reports false when the queue was
// full and the record was dropped (and counted). The queue's bound covers
// every record not yet written, including the batch being written.
func (w *Writer) Record(rec edge.RequestRecord) bool {
	if w.q.Push(rec) {
		return true
	}
	w.drop()
	return false
}

func (w *Writer) drop() {
	n := w.dropped.Add(1)
	now := time.Now().UnixNano()
	last := w.lastDropLog.Load()
	if now-last > int64(10*time.Second) && w.lastDropLog.CompareAndSwap(last, now) {
		w.opts.Logger.Warn("metadata queue full: request metadata dropped",
			"dropped_total", n, "queue", w.opts.Queue,
			"hint", "the store is too slow or unreachable; raise CODEX_METADATA_QUEUE or check the database")
	}
}

// Depth is the number of records not yet written.
func (w *Writer) Depth() int { return w.q.Len() }

// Capacity is the queue length.
func (w *Writer) Capacity() int { return w.q.Cap() }

// Dropped is the number of records dropped because the queue was full.
func (w *Writer) Dropped() int64 { return w.dropped.Load() }

// Written is the number of records stored.
func (w *Writer) Written() int64 { return w.written.Load() }

// Healthy reports whether the last write succeeded.
func (w *Writer) Healthy() bool { return w.healthy.Load() }

// Close stops accepting work and writes what is queued, giving up when ctx
// ends. Records still unwritten then are reported in the log.
func (w *Writer) Close(ctx context.Context) error {
	w.stopOnce.Do(func() { close(w.stop) })
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		w.opts.Logger.Error("metadata writer stopped before the queue was written",
			"unwritten", w.Depth())
		return ctx.Err()
	}
}

func (w *Writer) run() {
	defer close(w.done)
	timer := time.NewTicker(w.opts.Flush)
	defer timer.Stop()
	for {
		stopping := false
		select {
		case <-w.q.Ready():
		case <-timer.C:
		case <-w.stop:
			stopping = true
		}
		if w.flush(stopping) {
			return
		}
	}
}

// flush writes every queued record, in batches. It reports whether the
// writer is stopping: then each remaining batch gets one try.
func (w *Writer) flush(stopping bool) bool {
	all := w.q.Take()
	for recs := all; len(recs) > 0; {
		n := min(len(recs), w.opts.Batch)
		if !w.write(recs[:n], stopping) {
			stopping = true // asked to stop while retrying
		}
		recs = recs[n:]
		w.q.Release(n)
	}
	w.q.Recycle(all)
	return stopping
}

// write stores batch, retrying with back-off until it succeeds. While it
// retries, new records keep queueing (and overflow is counted). It returns
// false when asked to stop during a retry and the final flush also failed.
func (w *Writer) write(batch []edge.RequestRecord, stopping bool) bool {
	backoff := 50 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		start := time.Now()
		err := w.store.InsertRequests(ctx, batch)
		cancel()
		if w.opts.Observe != nil {
			w.opts.Observe(len(batch), time.Since(start), err)
		}
		if err == nil {
			w.written.Add(int64(len(batch)))
			if !w.healthy.Swap(true) {
				w.opts.Logger.Info("metadata store reachable again", "written", len(batch))
			}
			return true
		}
		if w.healthy.Swap(false) {
			w.opts.Logger.Error("metadata write failed; retrying, records stay queued",
				"err", err, "batch", len(batch), "queued", w.Depth())
		}
		if stopping {
			// One last try on the way out, then report what is lost.
			w.opts.Logger.Error("metadata not written at shutdown", "records", len(batch), "err", err)
			return false
		}
		select {
		case <-time.After(backoff):
		case <-w.stop:
			stopping = true
			continue
		}
		backoff = min(backoff*2, w.opts.MaxRetry)
	}
}
