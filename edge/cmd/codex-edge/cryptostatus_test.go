package main

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/persiv/codex/edge/internal/testutil"
)

const statusAdminToken = "admin-token-for-crypto-status-0123456789"

// tlsEdge configures c for serve over TLS with an admin token (what PUT
// /admin/v1/orgs/{org}/byok requires) on free loopback addresses, and
// returns a client that trusts the edge.
func (c *cli) tlsEdge(t *testing.T) *http.Client {
	t.Helper()
	certFile, keyFile, pool := testutil.SelfSignedCert(t)
	c.env["CODEX_TLS_CERT"], c.env["CODEX_TLS_KEY"] = certFile, keyFile
	c.env["CODEX_ADMIN_TOKEN"] = statusAdminToken
	c.env["CODEX_LISTEN"], c.env["CODEX_ADMIN_LISTEN"] = freeAddr(t), freeAddr(t)
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}}}
}

// serveTLS runs codex-edge serve (as tlsEdge configured it) until the test
// ends or stop is called.
func (c *cli) serveTLS(t *testing.T, client *http.Client) (stop func()) {
	t.Helper()
	return c.serveUntil(t, client, "https://"+c.env["CODEX_ADMIN_LISTEN"]+"/readyz")
}

// statusByName runs crypto status --json and returns its objects by org
// name, and what it wrote on stderr.
func (c *cli) statusByName(t *testing.T, args ...string) (map[string]map[string]any, string) {
	t.Helper()
	code, out, errs := c.run("", append([]string{"crypto", "status", "--json"}, args...)...)
	if code != 0 {
		t.Fatalf("crypto status --json: exit %d: %s", code, errs)
	}
	byName := map[string]map[string]any{}
	for _, m := range jsonLines(t, out) {
		name, _ := m["name"].(string)
		byName[name] = m
	}
	return byName, errs
}

// TestCryptoStatus: crypto status prints one object per org with the
// fields of DESIGN §11, a shredded org included, and asks the running
// edge which ephemeral keys it holds: unknown (null, and said) when no
// edge answers, true before the org's key is sent, false after.
func TestCryptoStatus(t *testing.T) {
	c := newCLI(t)
	client := c.tlsEdge(t)
	c.ok("orgs", "create", "plain")
	c.ok("orgs", "create", "gone")
	c.ok("orgs", "create", "eph", "--kek", "byok-ephemeral")
	for _, org := range []string{"plain", "gone"} {
		if code, _, errs := c.run("sk-key-of-"+org, "providers", "set", "--org", org, "openai", "--api-key-stdin"); code != 0 {
			t.Fatalf("providers set: %s", errs)
		}
	}
	c.ok("crypto", "rotate", "--org", "plain")
	c.ok("crypto", "shred", "--org", "gone", "--yes")

	type want struct {
		masterKey      string
		generation     float64
		dataKeys       int
		backupOpenable any // true, false or nil (null)
		backup         string
		waiting        any
	}
	check := func(t *testing.T, got map[string]map[string]any, wants map[string]want) {
		t.Helper()
		if len(got) != len(wants) {
			t.Fatalf("crypto status listed %d orgs, want %d: %v", len(got), len(wants), got)
		}
		for name, w := range wants {
			m, ok := got[name]
			if !ok {
				t.Errorf("org %s not listed", name)
				continue
			}
			dks, _ := m["data_keys"].([]any)
			if m["master_key"] != w.masterKey || m["generation"] != w.generation || len(dks) != w.dataKeys ||
				m["backup_openable"] != w.backupOpenable || !strings.HasPrefix(fmt.Sprint(m["backup"]), w.backup) || m["waiting_for_key"] != w.waiting {
				t.Errorf("org %s: %v\nwant %+v", name, m, w)
			}
			if id, _ := m["org_id"].(string); !strings.HasPrefix(id, "org_") {
				t.Errorf("org %s: org_id %q", name, id)
			}
		}
	}
	settled := map[string]want{
		"plain": {"default", 2, 2, true, "shared", false},
		"gone":  {"default", 0, 0, true, "shared", false},
	}
	with := func(eph want) map[string]want {
		m := map[string]want{"eph": eph}
		for k, v := range settled {
			m[k] = v
		}
		return m
	}

	// No edge runs: the ephemeral org's waiting is unknown, and said so.
	got, errs := c.statusByName(t)
	check(t, got, with(want{"byok-ephemeral", 0, 0, nil, "own key: held by the customer", nil}))
	if want := "running edge not reachable at " + c.env["CODEX_ADMIN_LISTEN"] + ": waiting_for_key unknown"; !strings.Contains(errs, want) {
		t.Fatalf("stderr %q, want %q", errs, want)
	}
	human := c.ok("crypto", "status")
	for _, s := range []string{"running edge not reachable at", "org eph (", "waiting for key:  unknown", "org gone (", "no data keys", "backup openable:  yes (shared)"} {
		if !strings.Contains(human, s) {
			t.Errorf("crypto status (human) lacks %q:\n%s", s, human)
		}
	}

	stop := c.serveTLS(t, client)
	got, errs = c.statusByName(t)
	check(t, got, with(want{"byok-ephemeral", 0, 0, nil, "own key: held by the customer", true}))
	if strings.Contains(errs, "not reachable") {
		t.Fatalf("stderr with the edge running: %q", errs)
	}
	if h := c.ok("crypto", "status", "--org", "eph"); !strings.Contains(h, "waiting for key:  yes") || !strings.Contains(h, "running edge asked at") {
		t.Fatalf("crypto status --org eph (human):\n%s", h)
	}

	// The edge is asked as serve is configured; another token or
	// certificate is refused, and reported as not reachable.
	nobody := freeAddr(t)
	for _, tc := range []struct {
		name, errHas string
		env          map[string]string
		args         []string
	}{
		{"wrong token", "401", map[string]string{"CODEX_ADMIN_TOKEN": "another-token-0123456789abcdef"}, nil},
		{"other certificate", "certificate other than", nil, nil},
		{"--admin-addr where no edge listens", "not reachable at " + nobody, map[string]string{}, []string{"--admin-addr", nobody}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			saved := map[string]string{}
			for k := range tc.env {
				saved[k] = c.env[k]
			}
			for k, v := range tc.env {
				c.env[k] = v
			}
			if tc.env == nil {
				saved["CODEX_TLS_CERT"], saved["CODEX_TLS_KEY"] = c.env["CODEX_TLS_CERT"], c.env["CODEX_TLS_KEY"]
				c.env["CODEX_TLS_CERT"], c.env["CODEX_TLS_KEY"], _ = testutil.SelfSignedCert(t)
			}
			defer func() {
				for k, v := range saved {
					c.env[k] = v
				}
			}()
			got, errs := c.statusByName(t, tc.args...)
			if got["eph"]["waiting_for_key"] != nil || !strings.Contains(errs, "waiting_for_key unknown") || !strings.Contains(errs, tc.errHas) {
				t.Fatalf("eph: %v; stderr %q", got["eph"], errs)
			}
		})
	}

	req, _ := http.NewRequest("PUT", "https://"+c.env["CODEX_ADMIN_LISTEN"]+"/admin/v1/orgs/eph/byok",
		strings.NewReader(`{"key":"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+statusAdminToken)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT byok: %d %s", resp.StatusCode, body)
	}
	got, _ = c.statusByName(t)
	check(t, got, with(want{"byok-ephemeral", 0, 0, true, "own key: held by the running edge", false}))

	// Restarted, the edge has lost the key: the org waits again.
	stop()
	c.serveTLS(t, client)
	got, _ = c.statusByName(t)
	check(t, got, with(want{"byok-ephemeral", 0, 0, nil, "own key: held by the customer", true}))
	var one map[string]any
	if err := json.Unmarshal([]byte(c.ok("crypto", "status", "--org", "plain", "--json")), &one); err != nil || one["name"] != "plain" {
		t.Fatalf("crypto status --org plain --json: %v, %v", one, err)
	}
}

// The CLI dials a listener on every interface on loopback.
func TestDialAddr(t *testing.T) {
	for _, tc := range []struct{ listen, want string }{
		{"127.0.0.1:8081", "127.0.0.1:8081"},
		{":8081", "127.0.0.1:8081"},
		{"0.0.0.0:8081", "127.0.0.1:8081"},
		{"[::]:8081", "[::1]:8081"},
		{"10.0.0.5:8081", "10.0.0.5:8081"},
		{"edge.internal:8081", "edge.internal:8081"},
	} {
		if got := dialAddr(tc.listen); got != tc.want {
			t.Errorf("dialAddr(%q) = %q, want %q", tc.listen, got, tc.want)
		}
	}
}
