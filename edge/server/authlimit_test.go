package server_test

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/apikey"
	"github.com/persiv/codex/edge/config"
	"github.com/persiv/codex/edge/fakeprovider"
)

// clientFrom is an HTTP client whose connections come from local, another
// loopback address: another client address to the edge.
func clientFrom(local string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
}

func post(t *testing.T, c *http.Client, url string, hdr map[string]string, body string) (int, http.Header, []byte) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

func unknownKey(t *testing.T) string {
	t.Helper()
	s, err := apikey.Generate() // well-formed, checksum right, never issued
	if err != nil {
		t.Fatal(err)
	}
	return s.Reveal()
}

// TestAuthFailureLimit (issue 13, finding 8): after CODEX_AUTH_FAILURE_LIMIT
// failed key checks an address gets 429 with retry-after for keys the edge
// does not hold; a key it holds keeps working from there, and every key
// keeps working from other addresses.
func TestAuthFailureLimit(t *testing.T) {
	const limit = 5
	h := newHarness(t, fakeprovider.Options{}, func(c *config.Config) {
		c.AuthFailureLimit, c.AuthFailureWindow = limit, time.Hour
	})
	tn := h.addOrg("acme")
	_, fresh := h.addKey(tn.orgID) // valid, not used yet
	attacker, other := clientFrom("127.0.0.1"), clientFrom("127.0.0.2")
	ok := func(c *http.Client, key string) {
		t.Helper()
		if st, _, body := post(t, c, h.base+"/v1/chat/completions", bearer(key), chatBody); st != 200 {
			t.Fatalf("status %d: %s", st, body)
		}
	}
	// The org's first use makes its fingerprint secret and data key,
	// changes that make the edge drop the org's keys from memory. After a
	// restart none is pending, so a key the edge holds stays held.
	ok(attacker, tn.key)
	h.restart(nil)
	chat := h.base + "/v1/chat/completions"
	ok(attacker, tn.key) // the edge now holds this key

	for i := range limit {
		if st, _, body := post(t, attacker, chat, bearer(unknownKey(t)), chatBody); st != 401 {
			t.Fatalf("failure %d: status %d: %s", i+1, st, body)
		}
	}
	for _, c := range []struct {
		p        edge.Provider
		url, typ string
		hdr      map[string]string
		body     string
	}{
		{edge.OpenAI, chat, "rate_limit_error", bearer(unknownKey(t)), chatBody},
		{edge.Anthropic, h.base + "/v1/messages", "rate_limit_error", anthropicHdr(unknownKey(t)), msgBody},
		// A valid key the edge does not hold yet waits too: telling it
		// from an unknown one would take the lookup being limited.
		{edge.OpenAI, chat, "rate_limit_error", bearer(fresh), chatBody},
	} {
		st, hdr, body := post(t, attacker, c.url, c.hdr, c.body)
		if st != 429 {
			t.Fatalf("%s after %d failures: status %d: %s", c.p, limit, st, body)
		}
		shape(t, c.p, body, c.typ)
		if ra, err := strconv.Atoi(hdr.Get("Retry-After")); err != nil || ra < 1 || ra > 3600 {
			t.Fatalf("retry-after %q, want the seconds left of the 1h window", hdr.Get("Retry-After"))
		}
	}
	ok(attacker, tn.key) // held: still works from the limited address
	ok(other, fresh)     // another address is not limited
	if st, _, body := post(t, other, chat, bearer(unknownKey(t)), chatBody); st != 401 {
		t.Fatalf("unknown key from another address: status %d: %s", st, body)
	}
	ok(attacker, fresh) // held now
	if v := metricValue(t, h, "codex_edge_auth_limited_total"); v != 3 {
		t.Fatalf("codex_edge_auth_limited_total = %v, want 3", v)
	}
}

// TestAuthFailureLimitBehindProxy: behind a trusted load balancer the
// client address comes from X-Forwarded-For, so clients behind it are
// limited apart.
func TestAuthFailureLimitBehindProxy(t *testing.T) {
	h := newHarness(t, fakeprovider.Options{}, func(c *config.Config) {
		c.AuthFailureLimit, c.AuthFailureWindow, c.TrustedProxies = 2, time.Hour, "127.0.0.1"
	})
	chat := h.base + "/v1/chat/completions"
	from := func(xff string) map[string]string {
		return map[string]string{"Authorization": "Bearer " + unknownKey(t), "X-Forwarded-For": xff}
	}
	for _, want := range []int{401, 401, 429} {
		if st, _, body := raw(t, "POST", chat, from("203.0.113.9"), chatBody); st != want {
			t.Fatalf("status %d, want %d: %s", st, want, body)
		}
	}
	// A client's own X-Forwarded-For entry is not believed: the load
	// balancer's appended one counts.
	if st, _, _ := raw(t, "POST", chat, from("198.51.100.1, 203.0.113.9"), chatBody); st != 429 {
		t.Fatalf("forged X-Forwarded-For escaped the limit: %d", st)
	}
	if st, _, body := raw(t, "POST", chat, from("198.51.100.1"), chatBody); st != 401 {
		t.Fatalf("another client behind the proxy: status %d: %s", st, body)
	}
}
