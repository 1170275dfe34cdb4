package forward

import (
	"context"
	"io"
	"sync/atomic"
	"time"
)

// idleTimer cancels the upstream call when no chunk arrives in time.
type idleTimer struct {
	d     time.Duration
	t     *time.Timer
	fired atomic.Bool
}

func newIdleTimer(d time.Duration, cancel context.CancelFunc) *idleTimer {
	it := &idleTimer{d: d}
	it.t = time.AfterFunc(d, func() {
		it.fired.Store(true)
		cancel()
	})
	return it
}

func (it *idleTimer) reset() { it.t.Reset(it.d) }
func (it *idleTimer) stop()  { it.t.Stop() }

// idleReader restarts the idle timer whenever the provider sends bytes.
type idleReader struct {
	r io.Reader
	t *idleTimer
}

func (ir *idleReader) Read(b []byte) (int, error) {
	n, err := ir.r.Read(b)
	if n > 0 {
		ir.t.reset()
	}
	return n, err
}
