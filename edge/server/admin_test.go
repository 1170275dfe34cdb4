package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/persiv/codex/edge/config"
	"github.com/persiv/codex/edge/fakeprovider"
)

// adminReq sends one request to the admin listener; host, when set,
// replaces the Host header (what a rebound DNS name makes a browser send).
func adminReq(t *testing.T, method, url, host string, hdr map[string]string, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Issue 13, finding 6: a web page must not be able to make a browser on the
// admin host revoke a key (or switch sharing), whatever it sends.
func TestAdminRefusesCrossSiteWrites(t *testing.T) {
	h := newHarness(t, fakeprovider.Options{}, nil)
	tn := h.addOrg("acme")
	admin := "http://" + h.srv.AdminAddr()
	revoke := admin + "/admin/v1/keys/" + tn.keyID + "/revoke"
	sharing := admin + "/admin/v1/telemetry/sharing"
	for _, c := range []struct {
		name, url, body string
		hdr             map[string]string
		want            int
	}{
		// What the review did: a cross-origin fetch with no content type.
		{"cross-origin no content type", revoke, "", map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}, 403},
		{"cross-site, JSON", revoke, "", map[string]string{"Sec-Fetch-Site": "cross-site", "Content-Type": "application/json"}, 403},
		{"same-site, JSON", revoke, "", map[string]string{"Sec-Fetch-Site": "same-site", "Content-Type": "application/json"}, 403},
		{"foreign Origin only, JSON", revoke, "", map[string]string{"Origin": "http://evil.example", "Content-Type": "application/json"}, 403},
		{"opaque Origin, JSON", revoke, "", map[string]string{"Origin": "null", "Content-Type": "application/json"}, 403},
		{"other port's Origin, JSON", revoke, "", map[string]string{"Origin": "http://127.0.0.1:1", "Content-Type": "application/json"}, 403},
		// A browser that sends neither header (old, or a plugin): the
		// content type is what it cannot set without a preflight.
		{"no headers, no content type", revoke, "", nil, 415},
		{"form", revoke, "x=1", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, 415},
		{"text/plain", revoke, "{}", map[string]string{"Content-Type": "text/plain"}, 415},
		{"sharing, cross-site", sharing, `{"on":true}`, map[string]string{"Sec-Fetch-Site": "cross-site", "Content-Type": "application/json"}, 403},
		{"sharing, text/plain", sharing, `{"on":true}`, map[string]string{"Content-Type": "text/plain"}, 415},
	} {
		if st, body := adminReq(t, "POST", c.url, "", c.hdr, c.body); st != c.want {
			t.Errorf("%s: %d %s, want %d", c.name, st, body, c.want)
		}
	}
	if st, _ := status(t, h, tn.key); st != 200 {
		t.Fatalf("the key stopped working after refused revocations: %d", st)
	}
	// The admin's own page (same origin) and a plain client still can.
	if st, body := adminReq(t, "POST", revoke, "", map[string]string{"Origin": admin, "Sec-Fetch-Site": "same-origin", "Content-Type": "application/json"}, ""); st != 200 {
		t.Fatalf("same-origin revoke: %d %s", st, body)
	}
	if st, _ := status(t, h, tn.key); st != 401 {
		t.Fatalf("after the revocation: %d", st)
	}
}

// Issue 13, finding 6: without a token, a page whose DNS name was rebound to
// 127.0.0.1 reads nothing from the admin listener (its Host is its own name).
func TestAdminRefusesForeignHostWithoutToken(t *testing.T) {
	h := newHarness(t, fakeprovider.Options{}, nil)
	admin := "http://" + h.srv.AdminAddr()
	_, port, _ := strings.Cut(h.srv.AdminAddr(), ":")
	for _, path := range []string{"/admin/v1/telemetry/ledger", "/admin/v1/telemetry", "/metrics"} {
		for _, host := range []string{"rebind.evil.example:" + port, "rebind.evil.example", "127.0.0.2:" + port, "localhost.evil.example:" + port} {
			if st, body := adminReq(t, "GET", admin+path, host, nil, ""); st != 403 {
				t.Errorf("GET %s with Host %s: %d %s, want 403", path, host, st, body)
			}
		}
		for _, host := range []string{"", "localhost:" + port, "LOCALHOST:" + port, "127.0.0.1:" + port, "[::1]:" + port, "localhost"} {
			if st, body := adminReq(t, "GET", admin+path, host, nil, ""); st != 200 {
				t.Errorf("GET %s with Host %q: %d %s, want 200", path, host, st, body)
			}
		}
	}
	// A cross-origin read is refused too, whatever the Host.
	if st, _ := adminReq(t, "GET", admin+"/admin/v1/telemetry/ledger", "", map[string]string{"Origin": "http://evil.example"}, ""); st != 403 {
		t.Errorf("cross-origin ledger read: %d, want 403", st)
	}
}

// With a token the listener may sit behind any name: the token is what
// protects it.
func TestAdminAnyHostWithToken(t *testing.T) {
	const token = "admin-token-0123456789"
	h := newHarnessEnv(t, fakeprovider.Options{}, nil, map[string]string{"CODEX_ADMIN_TOKEN": token})
	url := "http://" + h.srv.AdminAddr() + "/admin/v1/telemetry/ledger"
	if st, body := adminReq(t, "GET", url, "edge-admin.internal:8081", map[string]string{"Authorization": "Bearer " + token}, ""); st != 200 {
		t.Fatalf("with the token: %d %s", st, body)
	}
	if st, _ := adminReq(t, "GET", url, "edge-admin.internal:8081", nil, ""); st != 401 {
		t.Fatalf("without the token: %d, want 401", st)
	}
}

// Issue 13, finding 11: with an admin token set, /metrics and /debug/pprof
// need it too; only the health checks stay open.
func TestAdminTokenGuardsMetricsAndPprof(t *testing.T) {
	const token = "admin-token-0123456789"
	h := newHarnessEnv(t, fakeprovider.Options{}, func(c *config.Config) { c.Pprof = true }, map[string]string{"CODEX_ADMIN_TOKEN": token})
	admin := "http://" + h.srv.AdminAddr()
	for _, path := range []string{"/metrics", "/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/profile?seconds=1"} {
		for _, hdr := range []map[string]string{nil, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": "Bearer " + token[:len(token)-1]}, {"Authorization": token}} {
			if st, _ := adminReq(t, "GET", admin+path, "", hdr, ""); st != 401 {
				t.Errorf("GET %s with %v: %d, want 401", path, hdr, st)
			}
		}
	}
	for _, path := range []string{"/metrics", "/debug/pprof/", "/debug/pprof/heap"} {
		if st, body := adminReq(t, "GET", admin+path, "", map[string]string{"Authorization": "Bearer " + token}, ""); st != 200 || body == "" {
			t.Errorf("GET %s with the token: %d", path, st)
		}
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if st, body := adminReq(t, "GET", admin+path, "", nil, ""); st != 200 {
			t.Errorf("GET %s without the token: %d %s, want 200", path, st, body)
		}
	}
}

// Issue 14, item 4: the admin listener answers every error, its own
// refusals, the telemetry routes' and echo's, in one JSON shape:
// {"error":{"code","message"}}.
func TestAdminErrorsOneShape(t *testing.T) {
	const token = "admin-token-0123456789"
	open := newHarness(t, fakeprovider.Options{}, nil)
	tn := open.addOrg("acme")
	locked := newHarnessEnv(t, fakeprovider.Options{}, nil, map[string]string{"CODEX_ADMIN_TOKEN": token})
	admin := "http://" + open.srv.AdminAddr()
	_, port, _ := strings.Cut(open.srv.AdminAddr(), ":")
	jsonType := map[string]string{"Content-Type": "application/json"}
	for _, c := range []struct {
		name, method, url, host, body string
		hdr                           map[string]string
		status                        int
		code                          string
	}{
		{"unknown key", "POST", admin + "/admin/v1/keys/key_nope/revoke", "", "", jsonType, 404, "not_found"},
		{"form", "POST", admin + "/admin/v1/keys/" + tn.keyID + "/revoke", "", "x=1", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type"},
		{"cross-site", "POST", admin + "/admin/v1/keys/" + tn.keyID + "/revoke", "", "", map[string]string{"Sec-Fetch-Site": "cross-site", "Content-Type": "application/json"}, 403, "forbidden"},
		{"foreign host", "GET", admin + "/admin/v1/telemetry", "rebind.evil.example:" + port, "", nil, 403, "forbidden"},
		{"no token", "GET", "http://" + locked.srv.AdminAddr() + "/admin/v1/telemetry", "", "", nil, 401, "unauthorized"},
		{"no token, metrics", "GET", "http://" + locked.srv.AdminAddr() + "/metrics", "", "", nil, 401, "unauthorized"},
		{"unknown route", "GET", admin + "/admin/v1/nothing", "", "", nil, 404, "not_found"},
		{"wrong method", "POST", admin + "/healthz", "", "", jsonType, 405, "method_not_allowed"},
		{"sharing, bad body", "POST", admin + "/admin/v1/telemetry/sharing", "", `{"on":"yes"}`, jsonType, 400, "invalid_request"},
		{"sharing, not enrolled", "POST", admin + "/admin/v1/telemetry/sharing", "", `{"on":true}`, jsonType, 409, "not_enrolled"},
		{"ledger, bad after_seq", "GET", admin + "/admin/v1/telemetry/ledger?after_seq=x", "", "", nil, 400, "invalid_request"},
	} {
		st, body := adminReq(t, c.method, c.url, c.host, c.hdr, c.body)
		var got struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		dec := json.NewDecoder(strings.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&got); err != nil || st != c.status || got.Error.Code != c.code || got.Error.Message == "" {
			t.Errorf("%s: %d %s, want %d with code %q (%v)", c.name, st, body, c.status, c.code, err)
		}
	}
}
