// Package queue is the bounded hand-off between the request path and a
// background consumer (the metadata writer, the telemetry aggregator).
//
// Producers append under a mutex and never block; the consumer takes
// everything waiting at once. Unlike a channel, a push does not wake the
// consumer: it is told only when a batch is ready, and otherwise drains on
// its own timer, which saves a scheduler round trip per request. The queue
// grows only as far as the load needs instead of holding its whole bound
// from the start.
package queue

import "sync"

// Queue is a bounded multi-producer, single-consumer queue.
type Queue[T any] struct {
	mu    sync.Mutex
	items []T // waiting, oldest first
	spare []T // a drained slice, for reuse
	held  int // taken by the consumer and not yet released
	max   int
	batch int
	ready chan struct{}
}

// New returns a queue that holds at most limit items, counting those the
// consumer holds, and signals Ready once batch items wait.
func New[T any](limit, batch int) *Queue[T] {
	return &Queue[T]{max: limit, batch: max(batch, 1), ready: make(chan struct{}, 1)}
}

// Push appends v unless the queue is full, and reports whether it did.
func (q *Queue[T]) Push(v T) bool {
	q.mu.Lock()
	if len(q.items)+q.held >= q.max {
		q.mu.Unlock()
		return false
	}
	q.items = append(q.items, v)
	full := len(q.items) >= q.batch
	q.mu.Unlock()
	if full {
		select {
		case q.ready <- struct{}{}:
		default:
		}
	}
	return true
}

// Ready receives a value when a batch is waiting.
func (q *Queue[T]) Ready() <-chan struct{} { return q.ready }

// Take returns every waiting item. They keep counting against the bound
// until Release or Recycle.
func (q *Queue[T]) Take() []T {
	q.mu.Lock()
	defer q.mu.Unlock()
	items := q.items
	q.items, q.spare = q.spare[:0], nil
	q.held += len(items)
	return items
}

// Release tells the queue that n taken items are done with.
func (q *Queue[T]) Release(n int) {
	q.mu.Lock()
	q.held = max(q.held-n, 0)
	q.mu.Unlock()
}

// Recycle releases what is still held of a slice Take returned and keeps
// the slice for reuse, unless it grew far beyond a batch (a backlog after
// an outage), which is left to the garbage collector.
func (q *Queue[T]) Recycle(s []T) {
	keep := cap(s) <= max(4*q.batch, q.max/4)
	if keep {
		clear(s) // no references kept alive by a reused slice
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.held = 0
	if keep {
		q.spare = s[:0]
	}
}

// Len is the number of items waiting or held.
func (q *Queue[T]) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items) + q.held
}

// Cap is the bound.
func (q *Queue[T]) Cap() int { return q.max }
