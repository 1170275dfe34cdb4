// Package coalesce lets identical requests share one provider call: the
// first (the leader) makes the call and records the answer in a Flight as
// it arrives; those that arrive meanwhile (followers) wait on the Flight
// and receive the same answer, a stream event by event as the leader
// receives it (a broadcast buffer).
//
// Keys are chosen by the caller and must include the org, so that no
// answer crosses orgs. The upstream call belongs to everyone in the
// flight: it is cancelled only when the last participant has left.
package coalesce

import (
	"context"
	"errors"
	"sync"

	"github.com/persiv/codex/edge/cache"
)

// ErrRetry is a failure after which followers should call the provider
// themselves (the leader's client left before anything was received, or
// the answer was too large to share).
var ErrRetry = errors.New("coalesce: leader gave up; retry alone")

// Group is a set of flights in progress, by key.
type Group struct {
	mu sync.Mutex
	m  map[string]*Flight
}

// Join returns the flight in progress under key, or starts one with the
// caller as its leader. Every participant calls Release when it leaves.
func (g *Group) Join(key string) (f *Flight, leader bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if f := g.m[key]; f != nil {
		f.mu.Lock()
		f.refs++
		f.mu.Unlock()
		return f, false
	}
	if g.m == nil {
		g.m = make(map[string]*Flight)
	}
	f = &Flight{g: g, key: key, refs: 1, changed: make(chan struct{})}
	g.m[key] = f
	return f, true
}

// Lead starts a flight under key with the caller as its leader, even when
// one is in progress: a request that must not share an older call (it
// asked for a fresh answer) still lets later ones share its own. The older
// flight goes on for its participants but takes no new followers.
func (g *Group) Lead(key string) *Flight {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.m == nil {
		g.m = make(map[string]*Flight)
	}
	f := &Flight{g: g, key: key, refs: 1, changed: make(chan struct{})}
	g.m[key] = f
	return f
}

// Len is the number of flights in progress.
func (g *Group) Len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.m)
}

// Solo returns a flight outside any group: it only records an answer
// (for the cache) and is never joined.
func Solo() *Flight {
	return &Flight{g: &Group{}, refs: 1, changed: make(chan struct{})}
}

// Forget stops f from taking new followers; later identical requests
// start a new flight (or hit the cache the leader filled).
func (g *Group) Forget(f *Flight) {
	g.mu.Lock()
	if g.m[f.key] == f {
		delete(g.m, f.key)
	}
	g.mu.Unlock()
}

// Flight is one shared provider call and the answer received so far.
type Flight struct {
	g   *Group
	key string

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every change
	refs    int
	cancel  context.CancelFunc
	entry   cache.Entry // status, content type, body or events so far
	started bool
	done    bool
	err     error
}

// SetCancel gives the flight the function that cancels the upstream call,
// called when the last participant releases before the flight is done.
func (f *Flight) SetCancel(cancel context.CancelFunc) {
	f.mu.Lock()
	f.cancel = cancel
	f.mu.Unlock()
}

// Release leaves the flight. When no participant is left, the upstream
// call is cancelled. The flight stays joinable until its leader ends it:
// an answer that was complete when the call was cancelled is still
// shared (and stored), and a cancelled one fails its late joiners with
// ErrRetry.
func (f *Flight) Release() {
	f.mu.Lock()
	f.refs--
	last := f.refs == 0
	cancel := f.cancel
	done := f.done
	f.mu.Unlock()
	if last && !done && cancel != nil {
		cancel()
	}
}

// Participants is the number of participants that have not released.
func (f *Flight) Participants() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.refs
}

func (f *Flight) notify() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// Start records the answer's status and content type (leader only).
func (f *Flight) Start(status int, contentType string, stream bool) {
	f.mu.Lock()
	f.entry.Status, f.entry.ContentType, f.entry.Stream = status, contentType, stream
	f.started = true
	f.notify()
	f.mu.Unlock()
}

// AddEvent appends one raw SSE event (leader only).
func (f *Flight) AddEvent(raw []byte, usageOnly bool) {
	f.mu.Lock()
	f.entry.AddEvent(raw, usageOnly)
	f.notify()
	f.mu.Unlock()
}

// Size is the number of bytes recorded so far.
func (f *Flight) Size() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.entry.Events) + len(f.entry.Body)
}

// Finish ends the flight with a complete answer: body for a JSON answer
// (nil for a stream). fill, when set, completes the entry (model, usage,
// cost) under the flight's lock, before followers can see it.
func (f *Flight) Finish(body []byte, fill func(*cache.Entry)) {
	f.mu.Lock()
	f.entry.Body = body
	if fill != nil {
		fill(&f.entry)
	}
	f.done = true
	f.notify()
	f.mu.Unlock()
}

// Resolve ends the flight with an answer that did not come from the
// leader's own call (a cache hit).
func (f *Flight) Resolve(e *cache.Entry) {
	f.mu.Lock()
	f.entry = *e
	f.started, f.done = true, true
	f.notify()
	f.mu.Unlock()
}

// Fail ends the flight without a complete answer.
func (f *Flight) Fail(err error) {
	f.mu.Lock()
	if !f.done {
		f.err, f.done = err, true
		f.notify()
	}
	f.mu.Unlock()
	f.g.Forget(f)
}

// Entry returns the recorded answer; call it only after Finish.
func (f *Flight) Entry() *cache.Entry { return &f.entry }

// View is a follower's snapshot of a flight. Its slices must not be
// modified; they stay valid after the flight moves on.
type View struct {
	Started bool
	Entry   cache.Entry // shallow: Events, Ends, UsageOnly so far
	Done    bool
	Err     error
	changed chan struct{}
}

// Snapshot returns the flight's state now.
func (f *Flight) Snapshot() View {
	f.mu.Lock()
	defer f.mu.Unlock()
	return View{Started: f.started, Entry: f.entry, Done: f.done, Err: f.err, changed: f.changed}
}

// Wait blocks until the flight changed after v was taken, or ctx ends,
// and returns the new state.
func (f *Flight) Wait(ctx context.Context, v View) (View, error) {
	if v.Done {
		return v, nil
	}
	select {
	case <-v.changed:
		return f.Snapshot(), nil
	case <-ctx.Done():
		return v, ctx.Err()
	}
}
