// Package metadata writes request metadata to the store off the request
// path: records go into a bounded queue and a single writer stores them in
// batches. A full queue drops the record, counts the drop and logs it; a
// failing store is retried with back-off while the queue absorbs the load,
// so the request path never waits for the database.
package metadata

import (
	"context"
	"log/slog"
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

// Writer queues records and writes them in batches (a queue.Writer).
type Writer struct {
	*queue.Writer[edge.RequestRecord]
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
	return &Writer{queue.NewWriter(store.InsertRequests, queue.WriterOptions{
		What: "metadata", Setting: "CODEX_METADATA_QUEUE",
		Queue: opts.Queue, Batch: opts.Batch, Flush: opts.Flush, MaxRetry: opts.MaxRetry,
		Logger: opts.Logger, Observe: opts.Observe,
	})}
}

// Record queues rec without blocking. It reports false when the queue was
// full and the record was dropped (and counted).
func (w *Writer) Record(rec edge.RequestRecord) bool { return w.Push(rec) }
