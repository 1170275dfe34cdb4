package testutil

import (
	"context"
	"sync"
)

// Gate holds the calls that pass through it while a test holds it, and
// tells the test when one waits: it stands in for a slow store or master
// key, to show what a request does while a background call is stuck.
type Gate struct {
	mu   sync.Mutex
	held chan struct{} // nil while open
	// Waiting receives a value when a call waits at the held gate (one
	// is kept until read).
	Waiting chan struct{}
}

// NewGate returns an open gate.
func NewGate() *Gate { return &Gate{Waiting: make(chan struct{}, 1)} }

// Hold makes calls wait until release is called (release may be called
// more than once).
func (g *Gate) Hold() (release func()) {
	held := make(chan struct{})
	g.mu.Lock()
	g.held = held
	g.mu.Unlock()
	return sync.OnceFunc(func() {
		g.mu.Lock()
		g.held = nil
		g.mu.Unlock()
		close(held)
	})
}

// Pass returns at once while the gate is open; while it is held, it tells
// Waiting and waits for the release or for ctx to end.
func (g *Gate) Pass(ctx context.Context) error {
	g.mu.Lock()
	held := g.held
	g.mu.Unlock()
	if held == nil {
		return nil
	}
	select {
	case g.Waiting <- struct{}{}:
	default:
	}
	select {
	case <-held:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
