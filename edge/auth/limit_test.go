package auth

import (
	"net/http"
	"net/netip"
	"testing"
	"time"
)

func TestClientAddr(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/16"), netip.MustParsePrefix("192.0.2.7/32")}
	cases := []struct {
		name, remote string
		xff          []string
		trusted      []netip.Prefix
		want         string
	}{
		{"peer", "198.51.100.4:5555", nil, nil, "198.51.100.4"},
		{"forwarded for ignored from an untrusted peer", "198.51.100.4:5555", []string{"203.0.113.1"}, trusted, "198.51.100.4"},
		{"forwarded for ignored without trusted proxies", "10.0.1.1:5555", []string{"203.0.113.1"}, nil, "10.0.1.1"},
		{"trusted load balancer", "10.0.1.1:5555", []string{"203.0.113.1"}, trusted, "203.0.113.1"},
		{"client's own forged entries are left of the real one", "10.0.1.1:5555", []string{"1.1.1.1, 203.0.113.1"}, trusted, "203.0.113.1"},
		{"chain of trusted proxies", "10.0.1.1:5555", []string{"203.0.113.1, 192.0.2.7", "10.0.3.3"}, trusted, "203.0.113.1"},
		{"malformed entry stops the walk", "10.0.1.1:5555", []string{"203.0.113.1, junk"}, trusted, "10.0.1.1"},
		{"all trusted", "10.0.1.1:5555", []string{"10.0.2.2"}, trusted, "10.0.2.2"},
		{"ipv6 counts by /64", "[2001:db8:1:2:aaaa::1]:443", nil, nil, "2001:db8:1:2::"},
		{"ipv4-mapped ipv6", "[::ffff:198.51.100.4]:443", nil, nil, "198.51.100.4"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, _ := http.NewRequest("GET", "/", nil)
			r.RemoteAddr = c.remote
			for _, v := range c.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := clientAddr(r, c.trusted); got != netip.MustParseAddr(c.want) {
				t.Fatalf("client %v, want %s", got, c.want)
			}
		})
	}
}

func TestAuthLimiter(t *testing.T) {
	l := newLimiter(3, time.Minute, 100)
	a, b := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.2")
	t0 := time.Unix(1_000_000, 0)
	for i := range 3 {
		if w := l.blocked(a, t0); w != 0 {
			t.Fatalf("blocked after %d failures", i)
		}
		l.fail(a, t0.Add(time.Duration(i)*time.Second))
	}
	if w := l.blocked(a, t0.Add(10*time.Second)); w != 50*time.Second {
		t.Fatalf("wait %v after the limit, want until the window ends (50s)", w)
	}
	if w := l.blocked(b, t0); w != 0 {
		t.Fatal("another address is blocked")
	}
	if w := l.blocked(a, t0.Add(time.Minute)); w != 0 {
		t.Fatalf("still blocked (%v) once the window ended", w)
	}
	l.fail(a, t0.Add(time.Minute))
	if w := l.blocked(a, t0.Add(time.Minute)); w != 0 {
		t.Fatal("a failure in a new window blocked at once")
	}
	if e := errLimited(1500 * time.Millisecond); e.Status != 429 || e.RetryAfter != 2 {
		t.Fatalf("%+v", e)
	}
}

// TestAuthLimiterIsBounded: an attacker cycling addresses cannot grow the
// limiter past its bound.
func TestAuthLimiterIsBounded(t *testing.T) {
	const clients = 1000
	l := newLimiter(3, time.Minute, clients)
	now := time.Now()
	for i := range 10 * clients {
		l.fail(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), now)
	}
	if n := l.addrs.Len(); n != clients {
		t.Fatalf("%d addresses remembered, bound %d", n, clients)
	}
}
