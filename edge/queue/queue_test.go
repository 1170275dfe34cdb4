package queue

import (
	"sync"
	"testing"
)

func TestBoundCountsHeldItems(t *testing.T) {
	t.Parallel()
	q := New[int](4, 2)
	for i := range 3 {
		if !q.Push(i) {
			t.Fatalf("push %d refused with room", i)
		}
	}
	got := q.Take()
	if len(got) != 3 || got[0] != 0 || got[2] != 2 {
		t.Fatalf("Take = %v", got)
	}
	// 3 held: one more fits, then the queue is full until a release.
	if !q.Push(3) || q.Push(4) {
		t.Fatal("bound does not count held items")
	}
	if q.Len() != 4 {
		t.Fatalf("Len %d, want 4", q.Len())
	}
	q.Release(2)
	if !q.Push(5) || !q.Push(6) || q.Push(7) {
		t.Fatal("released room not reusable exactly")
	}
	q.Recycle(got)
	if q.Len() != 3 { // 3, 5, 6 wait
		t.Fatalf("Len %d after recycle, want 3", q.Len())
	}
	if next := q.Take(); len(next) != 3 || next[0] != 3 || next[1] != 5 || next[2] != 6 {
		t.Fatalf("Take = %v, want [3 5 6] in order", next)
	}
}

func TestReadyOncePerBatch(t *testing.T) {
	t.Parallel()
	q := New[int](100, 3)
	q.Push(1)
	q.Push(2)
	select {
	case <-q.Ready():
		t.Fatal("ready before a batch waits")
	default:
	}
	q.Push(3)
	select {
	case <-q.Ready():
	default:
		t.Fatal("not ready with a batch waiting")
	}
}

func TestRecycleDropsOversizedSlices(t *testing.T) {
	t.Parallel()
	q := New[int](1000, 2) // keeps slices up to 250 items
	for i := range 300 {
		q.Push(i)
	}
	big := q.Take()
	q.Recycle(big)
	if q.spare != nil {
		t.Fatalf("kept a slice of cap %d", cap(big))
	}
	q.Push(1)
	small := q.Take()
	q.Recycle(small)
	if q.spare == nil || small[0] != 0 {
		t.Fatal("small slice not kept, or not cleared")
	}
}

func TestConcurrentPushesLoseNothing(t *testing.T) {
	t.Parallel()
	const producers, each = 8, 5000
	q := New[int](producers*each, 64)
	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if !q.Push(p*each + i) {
					t.Error("push refused with room")
					return
				}
			}
		}()
	}
	seen := make([]bool, producers*each)
	n := 0
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for finished := false; !finished; {
		select {
		case <-done:
			finished = true
		case <-q.Ready():
		}
		items := q.Take()
		for _, v := range items {
			if seen[v] {
				t.Fatalf("%d taken twice", v)
			}
			seen[v] = true
			n++
		}
		q.Recycle(items)
	}
	if n != producers*each {
		t.Fatalf("took %d of %d", n, producers*each)
	}
}

func BenchmarkPush(b *testing.B) {
	q := New[[64]byte](1<<20, 1000)
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-q.Ready():
				q.Recycle(q.Take())
			}
		}
	}()
	defer close(stop)
	var v [64]byte
	b.ReportAllocs()
	for b.Loop() {
		q.Push(v) // a consumer that falls behind makes pushes fail: fine here
	}
}
