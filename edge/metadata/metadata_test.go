package metadata

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/internal/testutil"
)

// memStore stands in for the database in these queueing tests; the real
// stores are exercised by the integration tests.
type memStore struct {
	mu      sync.Mutex
	recs    []edge.RequestRecord
	batches []int
	fail    bool
	block   chan struct{}
}

func (m *memStore) InsertRequests(ctx context.Context, recs []edge.RequestRecord) error {
	if m.block != nil {
		<-m.block
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail {
		return errors.New("database unreachable")
	}
	m.recs = append(m.recs, recs...)
	m.batches = append(m.batches, len(recs))
	return nil
}

func (m *memStore) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.recs)
}

func rec(i int) edge.RequestRecord { return edge.RequestRecord{ID: fmt.Sprintf("req_%d", i)} }

func TestBatchesAndCloseDrains(t *testing.T) {
	t.Parallel()
	st := &memStore{}
	w := New(st, Options{Queue: 1000, Batch: 7, Flush: time.Hour})
	for i := range 100 {
		if !w.Record(rec(i)) {
			t.Fatal("dropped with room in the queue")
		}
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st.count() != 100 || w.Written() != 100 {
		t.Fatalf("stored %d, written %d; want 100", st.count(), w.Written())
	}
	for _, n := range st.batches {
		if n > 7 {
			t.Fatalf("batch of %d exceeds the limit 7", n)
		}
	}
	seen := map[string]bool{}
	for _, r := range st.recs {
		if seen[r.ID] {
			t.Fatalf("%s stored twice", r.ID)
		}
		seen[r.ID] = true
	}
}

func TestFlushInterval(t *testing.T) {
	t.Parallel()
	st := &memStore{}
	w := New(st, Options{Batch: 1000, Flush: 10 * time.Millisecond})
	defer w.Close(context.Background())
	w.Record(rec(1))
	testutil.Eventually(t, 10*time.Second, "a partial batch to be flushed", func() bool { return st.count() == 1 })
}

func TestFullQueueDropsAndCounts(t *testing.T) {
	t.Parallel()
	st := &memStore{block: make(chan struct{})}
	w := New(st, Options{Queue: 4, Batch: 1, Flush: time.Millisecond})
	// The writer takes a record and blocks in the store; the bound covers
	// that record too, so exactly 4 are accepted whatever the timing, and
	// everything after that is dropped.
	accepted := 0
	for i := range 20 {
		if w.Record(rec(i)) {
			accepted++
		}
	}
	if accepted != 4 || w.Dropped() != 16 {
		t.Fatalf("accepted %d and dropped %d of 20; want 4 and 16", accepted, w.Dropped())
	}
	if w.Depth() != 4 {
		t.Fatalf("depth %d, want 4", w.Depth())
	}
	close(st.block)
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st.count() != accepted {
		t.Fatalf("stored %d, want every accepted record (%d)", st.count(), accepted)
	}
}

func TestStoreOutageLosesNothing(t *testing.T) {
	t.Parallel()
	st := &memStore{fail: true}
	w := New(st, Options{Batch: 10, Flush: time.Millisecond, MaxRetry: 5 * time.Millisecond})
	for i := range 50 {
		w.Record(rec(i))
	}
	testutil.Eventually(t, 10*time.Second, "the writer to notice the outage", func() bool { return !w.Healthy() })
	st.mu.Lock()
	st.fail = false
	st.mu.Unlock()
	testutil.Eventually(t, 10*time.Second, "every record to be written after recovery", func() bool { return st.count() == 50 })
	if !w.Healthy() {
		t.Fatal("writer still unhealthy after a successful write")
	}
	w.Close(context.Background())
}

// discard counts what it is given: the benchmark measures the queue, not
// a store.
type discard struct{ n atomic.Int64 }

func (d *discard) InsertRequests(_ context.Context, recs []edge.RequestRecord) error {
	d.n.Add(int64(len(recs)))
	return nil
}

func BenchmarkRecord(b *testing.B) {
	w := New(&discard{}, Options{Queue: 1 << 20, Batch: 1000, Flush: time.Millisecond})
	defer w.Close(context.Background())
	r := rec(1)
	b.ReportAllocs()
	for b.Loop() {
		w.Record(r)
	}
}
