package queue

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// WriterOptions configure a Writer. Zero durations and sizes are
// programming errors: callers pass their package's defaults.
type WriterOptions struct {
	// What names the items in log lines ("metadata", "audit events") and
	// Setting the variable that sizes the queue, for the drop warning.
	What, Setting string
	Queue         int           // queue length
	Batch         int           // items per write
	Flush         time.Duration // longest wait before a partial batch is written
	MaxRetry      time.Duration // longest back-off between failed writes
	Logger        *slog.Logger
	// Observe, if set, is told about every write: its size, how long it
	// took and whether it failed.
	Observe func(n int, took time.Duration, err error)
}

// Writer stores items off the request path: Push puts an item in a
// bounded queue without blocking, and one goroutine writes the queue in
// batches. A full queue drops the item, counts the drop and logs it (at
// most every 10s); a failing write is retried with back-off while the
// queue absorbs the load. Package metadata and the audit log's queued
// events share it.
type Writer[T any] struct {
	write func(ctx context.Context, batch []T) error
	opts  WriterOptions
	q     *Queue[T]

	dropped     atomic.Int64
	written     atomic.Int64
	healthy     atomic.Bool
	lastDropLog atomic.Int64 // unix nanos; rate-limits the drop warning

	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

// NewWriter starts a writer that stores batches with write; Close drains
// it.
func NewWriter[T any](write func(ctx context.Context, batch []T) error, opts WriterOptions) *Writer[T] {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	w := &Writer[T]{write: write, opts: opts, q: New[T](opts.Queue, opts.Batch),
		stop: make(chan struct{}), done: make(chan struct{})}
	w.healthy.Store(true)
	go w.run()
	return w
}

// Push queues item without blocking. It reports false when the queue was
// full and the item was dropped (and counted). The queue's bound covers
// every item not yet written, including the batch being written.
func (w *Writer[T]) Push(item T) bool {
	if w.q.Push(item) {
		return true
	}
	n := w.dropped.Add(1)
	now := time.Now().UnixNano()
	last := w.lastDropLog.Load()
	if now-last > int64(10*time.Second) && w.lastDropLog.CompareAndSwap(last, now) {
		w.opts.Logger.Warn(w.opts.What+" queue full: "+w.opts.What+" dropped",
			"dropped_total", n, "queue", w.opts.Queue,
			"hint", "the store is too slow or unreachable; raise "+w.opts.Setting+" or check the database")
	}
	return false
}

// Depth is the number of queued items not yet written.
func (w *Writer[T]) Depth() int { return w.q.Len() }

// Capacity is the queue length.
func (w *Writer[T]) Capacity() int { return w.q.Cap() }

// Dropped is the number of items dropped because the queue was full.
func (w *Writer[T]) Dropped() int64 { return w.dropped.Load() }

// Written is the number of items stored.
func (w *Writer[T]) Written() int64 { return w.written.Load() }

// Healthy reports whether the last write succeeded.
func (w *Writer[T]) Healthy() bool { return w.healthy.Load() }

// Close stops accepting work and writes what is queued, giving up when ctx
// ends. Items still unwritten then are reported in the log.
func (w *Writer[T]) Close(ctx context.Context) error {
	w.stopOnce.Do(func() { close(w.stop) })
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		w.opts.Logger.Error(w.opts.What+" writer stopped before the queue was written", "unwritten", w.Depth())
		return ctx.Err()
	}
}

func (w *Writer[T]) run() {
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

// flush writes every queued item, in batches. It reports whether the
// writer is stopping: then each remaining batch gets one try.
func (w *Writer[T]) flush(stopping bool) bool {
	all := w.q.Take()
	for items := all; len(items) > 0; {
		n := min(len(items), w.opts.Batch)
		if !w.writeBatch(items[:n], stopping) {
			stopping = true // asked to stop while retrying
		}
		items = items[n:]
		w.q.Release(n)
	}
	w.q.Recycle(all)
	return stopping
}

// writeBatch stores batch, retrying with back-off until it succeeds. While
// it retries, new items keep queueing (and overflow is counted). It
// returns false when asked to stop during a retry and the final try also
// failed.
func (w *Writer[T]) writeBatch(batch []T, stopping bool) bool {
	backoff := 50 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		start := time.Now()
		err := w.write(ctx, batch)
		cancel()
		if w.opts.Observe != nil {
			w.opts.Observe(len(batch), time.Since(start), err)
		}
		if err == nil {
			w.written.Add(int64(len(batch)))
			if !w.healthy.Swap(true) {
				w.opts.Logger.Info(w.opts.What+" store reachable again", "written", len(batch))
			}
			return true
		}
		if w.healthy.Swap(false) {
			w.opts.Logger.Error(w.opts.What+" write failed; retrying, the batch stays queued",
				"err", err, "batch", len(batch), "queued", w.Depth())
		}
		if stopping {
			// One last try on the way out, then report what is lost.
			w.opts.Logger.Error(w.opts.What+" not written at shutdown", "items", len(batch), "err", err)
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
