package auth

import (
	"context"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"

	"github.com/persiv/codex/edge"
)

// Limiting failed gateway-key checks (issue 13, finding 8). Every
// well-formed key the edge does not know costs a store lookup; a client
// address whose keys failed Options.FailureLimit times within
// Options.FailureWindow gets 429 for keys the edge does not already
// hold as valid, until the window ends. Keys already known to the edge
// (cached from an earlier use) keep working from that address: they cost
// no lookup, and an attacker sharing a NAT or a load balancer's address
// with honest clients does not lock them out.

// limiter counts failed key checks per client address, in fixed
// windows, remembering at most a bounded number of addresses (the least
// recently failing are forgotten first).
type limiter struct {
	limit  int
	window time.Duration

	mu    sync.Mutex
	addrs *simplelru.LRU[netip.Addr, authWindow]
}

type authWindow struct {
	start    time.Time
	failures int
}

func newLimiter(limit int, window time.Duration, clients int) *limiter {
	addrs, _ := simplelru.NewLRU[netip.Addr, authWindow](clients, nil) // clients is positive
	return &limiter{limit: limit, window: window, addrs: addrs}
}

// blocked returns how long addr must wait before its keys are checked
// again; zero when they may be checked now.
func (l *limiter) blocked(addr netip.Addr, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	w, ok := l.addrs.Peek(addr)
	if !ok || w.failures < l.limit {
		return 0
	}
	return max(w.start.Add(l.window).Sub(now), 0)
}

// fail counts a failed key check from addr.
func (l *limiter) fail(addr netip.Addr, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	w, ok := l.addrs.Get(addr)
	if !ok || now.Sub(w.start) >= l.window {
		w = authWindow{start: now}
	}
	w.failures++
	l.addrs.Add(addr, w)
}

func errLimited(wait time.Duration) *edge.Error {
	secs := int((wait + time.Second - 1) / time.Second)
	secs = max(secs, 1)
	return &edge.Error{Status: 429, Code: "auth_rate_limited", RetryAfter: secs,
		Message: "Too many invalid gateway keys from this address; retry in " + strconv.Itoa(secs) + " s (CODEX_AUTH_FAILURE_LIMIT)."}
}

// clientAddr is the address failed key checks are counted against: the
// peer's, or, when the peer is a trusted proxy, the nearest address in
// X-Forwarded-For that is not one. IPv6 addresses count by /64, the
// smallest block a client usually holds.
func clientAddr(r *http.Request, trusted []netip.Prefix) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{} // in-process callers: one shared address
	}
	addr := ap.Addr().Unmap()
	if isTrusted(trusted, addr) {
		// Proxies append the address they received from, so the client
		// is the rightmost entry that no trusted proxy added.
		xff := r.Header.Values("X-Forwarded-For")
	walk:
		for i := len(xff) - 1; i >= 0; i-- {
			parts := strings.Split(xff[i], ",")
			for j := len(parts) - 1; j >= 0; j-- {
				a, err := netip.ParseAddr(strings.TrimSpace(parts[j]))
				if err != nil {
					break walk
				}
				addr = a.Unmap()
				if !isTrusted(trusted, addr) {
					break walk
				}
			}
		}
	}
	if addr.Is6() {
		addr = netip.PrefixFrom(addr, 64).Masked().Addr()
	}
	return addr
}

func isTrusted(trusted []netip.Prefix, a netip.Addr) bool {
	for _, pre := range trusted {
		if pre.Contains(a) {
			return true
		}
	}
	return false
}

// padRejection waits until the next multiple of q since
// start (issue 13, timing of rejected keys). Refusing an unknown key, a
// revoked one, and one remembered as absent take different work (the
// store returns a row or none; the directory may answer from memory); as
// long as that work fits in the quantum, every refusal leaves at the same
// moment, and the few that do not fit are rounded up alike. It costs only
// refused requests, whose rate the failure limiter bounds.
func padRejection(ctx context.Context, start time.Time, q time.Duration) {
	elapsed := time.Since(start)
	t := time.NewTimer((elapsed/q+1)*q - elapsed)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done(): // the client is gone: no one to tell anything
	}
}
