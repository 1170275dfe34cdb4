package server_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/apikey"
	"github.com/persiv/codex/edge/config"
	"github.com/persiv/codex/edge/fakeprovider"
	"github.com/persiv/codex/edge/internal/testutil"
	"github.com/persiv/codex/edge/server"
)

// An org on byok-ephemeral waits for its key after start-up (readyz names
// it); PUT /admin/v1/orgs/{org}/byok is refused on plain HTTP and without
// the admin token, and accepted over TLS with it, after which the org no
// longer waits.
func TestEphemeralBYOK(t *testing.T) {
	const token = "admin-token-for-byok-test-0123456789"
	const key = `{"key":"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"}`

	plain := newHarnessEnv(t, fakeprovider.Options{}, nil, map[string]string{"CODEX_ADMIN_TOKEN": token})
	if st, _, body := raw(t, "PUT", "http://"+plain.srv.AdminAddr()+"/admin/v1/orgs/org_x/byok",
		map[string]string{"Authorization": "Bearer " + token, "Content-Type": "application/json"}, key); st != http.StatusForbidden || !strings.Contains(string(body), "TLS") {
		t.Fatalf("PUT byok on plain HTTP: %d %s", st, body)
	}

	certFile, keyFile, pool := server.SelfSignedCert(t)
	h := newHarnessEnv(t, fakeprovider.Options{}, func(c *config.Config) {
		c.Listen, c.AdminListen = "127.0.0.1:0", "127.0.0.1:0"
		c.TLSCert, c.TLSKey = certFile, keyFile
	}, map[string]string{"CODEX_ADMIN_TOKEN": token})
	ctx := context.Background()
	org := edge.Org{ID: apikey.NewID("org_"), Name: "eph", CreatedAt: time.Now(), MasterKey: "byok-ephemeral"}
	if err := h.store.CreateOrg(ctx, org); err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	admin := "https://" + h.srv.AdminAddr()
	waiting := func() string {
		resp, err := c.Get(admin + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]string
		b, _ := io.ReadAll(resp.Body)
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("readyz %s: %v", b, err)
		}
		return m["orgs_waiting_for_key"]
	}
	testutil.Eventually(t, 10*time.Second, "readyz names the org waiting for its key", func() bool { return waiting() == org.ID })
	put := func(hdr map[string]string) (int, string) {
		req, _ := http.NewRequest("PUT", admin+"/admin/v1/orgs/"+org.ID+"/byok", strings.NewReader(key))
		req.Header.Set("Content-Type", "application/json")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if st, body := put(nil); st != http.StatusUnauthorized {
		t.Fatalf("PUT byok without token: %d %s", st, body)
	}
	if st, body := put(map[string]string{"Authorization": "Bearer " + token}); st != http.StatusOK {
		t.Fatalf("PUT byok: %d %s", st, body)
	}
	if w := waiting(); w != "" {
		t.Fatalf("still waiting after the key was sent: %q", w)
	}
}
