package server_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/apikey"
	"github.com/persiv/codex/edge/audit"
	"github.com/persiv/codex/edge/config"
	"github.com/persiv/codex/edge/fakeprovider"
	"github.com/persiv/codex/edge/internal/testutil"
	"github.com/persiv/codex/edge/keyring/byok"
	"github.com/persiv/codex/edge/keyring/kek"
	"github.com/persiv/codex/edge/server"
)

const (
	byokToken = "admin-token-for-byok-test-0123456789"
	byokBody  = `{"key":"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"}`
)

// byokEdge is an edge whose admin API takes ephemeral BYOK keys: TLS and
// an admin token.
type byokEdge struct {
	*harness
	client *http.Client
}

func newBYOKEdge(t *testing.T) *byokEdge {
	t.Helper()
	certFile, keyFile, pool := testutil.SelfSignedCert(t)
	h := newHarnessEnv(t, fakeprovider.Options{}, func(c *config.Config) {
		c.Listen, c.AdminListen = "127.0.0.1:0", "127.0.0.1:0"
		c.TLSCert, c.TLSKey = certFile, keyFile
	}, map[string]string{"CODEX_ADMIN_TOKEN": byokToken})
	h.base = "https://" + h.srv.Addr()
	return &byokEdge{harness: h, client: &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}}
}

// do sends one request to the edge over TLS and returns the status and body.
func (b *byokEdge) do(method, url string, hdr map[string]string, body string) (int, string) {
	b.t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

// putKey sends the org's key (org: an id or a name).
func (b *byokEdge) putKey(org string, hdr map[string]string) (int, string) {
	b.t.Helper()
	return b.do("PUT", "https://"+b.srv.AdminAddr()+"/admin/v1/orgs/"+org+"/byok", hdr, byokBody)
}

func (b *byokEdge) waiting() string {
	b.t.Helper()
	_, body := b.do("GET", "https://"+b.srv.AdminAddr()+"/readyz", nil, "")
	var m map[string]string
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		b.t.Fatalf("readyz %s: %v", body, err)
	}
	return m["orgs_waiting_for_key"]
}

// gauge reads codex_edge_orgs_waiting_for_key from the admin listener.
func (b *byokEdge) gauge() string {
	b.t.Helper()
	st, body := b.do("GET", "https://"+b.srv.AdminAddr()+"/metrics", map[string]string{"Authorization": "Bearer " + byokToken}, "")
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, "codex_edge_orgs_waiting_for_key "); ok && st == http.StatusOK {
			return v
		}
	}
	b.t.Fatalf("metrics: %d, no codex_edge_orgs_waiting_for_key", st)
	return ""
}

// cryptoStatus reads GET /admin/v1/crypto/status (what codex-edge crypto
// status asks).
func (b *byokEdge) cryptoStatus() server.CryptoStatus {
	b.t.Helper()
	var cs server.CryptoStatus
	st, body := b.do("GET", "https://"+b.srv.AdminAddr()+"/admin/v1/crypto/status", map[string]string{"Authorization": "Bearer " + byokToken}, "")
	if err := json.Unmarshal([]byte(body), &cs); err != nil || st != http.StatusOK {
		b.t.Fatalf("crypto status: %d %s", st, body)
	}
	return cs
}

// An org on byok-ephemeral waits for its key after start-up (readyz names
// it); PUT /admin/v1/orgs/{org}/byok is refused on plain HTTP and without
// the admin token, and accepted over TLS with it, after which the org no
// longer waits.
func TestEphemeralBYOK(t *testing.T) {
	plain := newHarnessEnv(t, fakeprovider.Options{}, nil, map[string]string{"CODEX_ADMIN_TOKEN": byokToken})
	if st, _, body := raw(t, "PUT", "http://"+plain.srv.AdminAddr()+"/admin/v1/orgs/org_x/byok",
		map[string]string{"Authorization": "Bearer " + byokToken, "Content-Type": "application/json"}, byokBody); st != http.StatusForbidden || !strings.Contains(string(body), "TLS") {
		t.Fatalf("PUT byok on plain HTTP: %d %s", st, body)
	}

	// Over TLS but with no admin token configured: refused too, since
	// whoever reaches loopback could set the key.
	certFile, keyFile, _ := testutil.SelfSignedCert(t)
	noToken := newHarnessEnv(t, fakeprovider.Options{}, func(c *config.Config) { c.TLSCert, c.TLSKey = certFile, keyFile }, nil)
	insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // G402: a test's own self-signed edge
	req, _ := http.NewRequest("PUT", "https://"+noToken.srv.AdminAddr()+"/admin/v1/orgs/org_x/byok", strings.NewReader(byokBody))
	req.Header.Set("Content-Type", "application/json")
	resp, err := insecure.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "CODEX_ADMIN_TOKEN") {
		t.Fatalf("PUT byok over TLS without an admin token configured: %d %s", resp.StatusCode, body)
	}

	b := newBYOKEdge(t)
	if g := b.gauge(); g != "0" {
		t.Fatalf("codex_edge_orgs_waiting_for_key with no org waiting: %s", g)
	}
	org := edge.Org{ID: apikey.NewID("org_"), Name: "eph", CreatedAt: time.Now(), MasterKey: kek.Ephemeral}
	if err := b.store.CreateOrg(context.Background(), org); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "readyz names the org waiting for its key", func() bool { return b.waiting() == org.ID })
	if g, cs := b.gauge(), b.cryptoStatus(); g != "1" || !slices.Equal(cs.WaitingForKey, []string{org.ID}) || len(cs.KeyInMemory) != 0 {
		t.Fatalf("waiting for the key: gauge %s, crypto status %+v", g, cs)
	}
	if st, body := b.putKey(org.ID, nil); st != http.StatusUnauthorized {
		t.Fatalf("PUT byok without token: %d %s", st, body)
	}
	if st, body := b.putKey(org.ID, map[string]string{"Authorization": "Bearer " + byokToken}); st != http.StatusOK {
		t.Fatalf("PUT byok: %d %s", st, body)
	}
	if w := b.waiting(); w != "" {
		t.Fatalf("still waiting after the key was sent: %q", w)
	}
	if g, cs := b.gauge(), b.cryptoStatus(); g != "0" || len(cs.WaitingForKey) != 0 || !slices.Equal(cs.KeyInMemory, []string{org.ID}) {
		t.Fatalf("after the key was sent: gauge %s, crypto status %+v", g, cs)
	}
}

// TestEphemeralBYOKRewrap: an org with data moved to byok-ephemeral (as
// `orgs kek set --org ORG byok-ephemeral` does) keeps working under its
// earlier master key until its key arrives; the edge that receives the key
// (by the org's name) re-wraps the org's data keys under it, so the
// default master key no longer opens them; after a restart the org's
// credential is unreadable (503) until the key is sent again.
func TestEphemeralBYOKRewrap(t *testing.T) {
	ctx := context.Background()
	b := newBYOKEdge(t)
	a, other := b.addOrg("acme"), b.addOrg("other")
	for _, tn := range []tenant{a, other} {
		sealProvider(t, b.harness, b.srv.Keyring(), tn, "sk-sealed-"+tn.orgID)
	}
	chat := func(tn tenant) int {
		st, _ := b.do("POST", b.base+"/v1/chat/completions", map[string]string{"Authorization": "Bearer " + tn.key}, chatBody)
		return st
	}
	testutil.Eventually(t, 10*time.Second, "the sealed credential to work", func() bool { return chat(a) == 200 })
	deks, err := b.store.DEKs(ctx, a.orgID)
	if err != nil || len(deks) != 1 || deks[0].MasterRef == byok.Ref {
		t.Fatalf("data keys before the move: %+v, %v", deks, err)
	}

	if err := b.store.SetOrgMasterKey(ctx, a.orgID, kek.Ephemeral); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "readyz names the org waiting for its key", func() bool { return b.waiting() == a.orgID })
	if st := chat(a); st != 200 {
		t.Fatalf("before the key arrives, under the earlier master key: %d", st)
	}
	auth := map[string]string{"Authorization": "Bearer " + byokToken}
	st, body := b.putKey("acme", auth)
	var res struct{ DataKeys, Rewrapped, Failed int }
	if err := json.Unmarshal([]byte(body), &struct {
		DataKeys  *int `json:"data_keys"`
		Rewrapped *int `json:"rewrapped"`
		Failed    *int `json:"failed"`
	}{&res.DataKeys, &res.Rewrapped, &res.Failed}); err != nil || st != 200 || res.DataKeys != 1 || res.Rewrapped != 1 || res.Failed != 0 {
		t.Fatalf("PUT byok: %d %s", st, body)
	}
	deks, err = b.store.DEKs(ctx, a.orgID)
	if err != nil || len(deks) != 1 || deks[0].MasterRef != byok.Ref {
		t.Fatalf("data keys after the key arrived: %+v, %v; want wrapped by the org's key", deks, err)
	}
	if st := chat(a); st != 200 {
		t.Fatalf("under the org's key: %d", st)
	}

	// Restarted, the edge no longer has the key: the org's credential is
	// unreadable, the other org's is not, until the key is sent again.
	b.restart(nil)
	b.base = "https://" + b.srv.Addr()
	if st, body := b.do("POST", b.base+"/v1/chat/completions", map[string]string{"Authorization": "Bearer " + a.key}, chatBody); st != 503 ||
		!strings.Contains(body, `"code":"provider_credential_unavailable"`) {
		t.Fatalf("after a restart without the key: %d %s; want 503 provider_credential_unavailable", st, body)
	}
	if st := chat(other); st != 200 {
		t.Fatalf("other org after the restart: %d", st)
	}
	if st, body := b.putKey(a.orgID, auth); st != 200 || !strings.Contains(body, `"rewrapped":0`) {
		t.Fatalf("PUT byok after the restart: %d %s", st, body)
	}
	testutil.Eventually(t, 10*time.Second, "the org's credential with its key back", func() bool { return chat(a) == 200 })
}

// TestAuditBYOKSupplied: an org's ephemeral key sent to the admin API is
// recorded as one admin event that says a key arrived and how many data
// keys moved under it; neither the key, in any of its written forms, nor
// anything derived from it (its digest, its version fingerprint) is in the
// stored event, the listing or the export. A refused PUT records nothing.
func TestAuditBYOKSupplied(t *testing.T) {
	ctx := context.Background()
	b := newBYOKEdge(t)
	a := b.addOrg("acme")
	sealProvider(t, b.harness, b.srv.Keyring(), a, "sk-sealed-"+a.orgID)
	chat := func() int {
		st, _ := b.do("POST", b.base+"/v1/chat/completions", map[string]string{"Authorization": "Bearer " + a.key}, chatBody)
		return st
	}
	testutil.Eventually(t, 10*time.Second, "the sealed credential to work", func() bool { return chat() == 200 })
	if err := b.store.SetOrgMasterKey(ctx, a.orgID, kek.Ephemeral); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "readyz names the org waiting for its key", func() bool { return b.waiting() == a.orgID })

	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(0xa0 + i)
	}
	m, err := byok.New(key)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(key)
	secrets := append([]string{
		hex.EncodeToString(key), strings.ToUpper(hex.EncodeToString(key)),
		base64.StdEncoding.EncodeToString(key), base64.RawStdEncoding.EncodeToString(key),
		base64.URLEncoding.EncodeToString(key), base64.RawURLEncoding.EncodeToString(key),
		hex.EncodeToString(sum[:]), base64.StdEncoding.EncodeToString(sum[:]),
	}, m.Versions()...)
	body := `{"key":"` + base64.StdEncoding.EncodeToString(key) + `"}`
	put := "https://" + b.srv.AdminAddr() + "/admin/v1/orgs/acme/byok"

	before := len(adminEventsNow(t, b.store, a.orgID))
	if st, out := b.do("PUT", put, nil, body); st != http.StatusUnauthorized {
		t.Fatalf("PUT byok without token: %d %s", st, out)
	}
	if n := len(adminEventsNow(t, b.store, a.orgID)); n != before {
		t.Fatalf("a refused PUT added %d events", n-before)
	}
	auth := map[string]string{"Authorization": "Bearer " + byokToken}
	if st, out := b.do("PUT", put, auth, body); st != http.StatusOK || !strings.Contains(out, `"rewrapped":1`) {
		t.Fatalf("PUT byok: %d %s", st, out)
	}
	evs := adminEventsNow(t, b.store, a.orgID)
	if len(evs) != before+1 {
		t.Fatalf("%d events added, want 1", len(evs)-before)
	}
	ev := evs[len(evs)-1]
	it, err := audit.ItemOf(ev)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"data_keys": "1", "rewrapped": "1", "failed": "0"}
	if it.Kind != edge.AuditAdmin || it.Action != "crypto.byok_supplied" || it.Target != "" || it.Via != "admin-api" || it.Actor != "127.0.0.1" || !maps.Equal(it.Details, want) {
		t.Fatalf("event %+v; want crypto.byok_supplied with %v by admin-api from 127.0.0.1", it, want)
	}

	stored, _ := json.Marshal(ev)
	rec, err := audit.RecordOf(ev)
	if err != nil {
		t.Fatal(err)
	}
	export, _ := json.Marshal(rec)
	_, list := b.do("GET", "https://"+b.srv.AdminAddr()+"/admin/v1/orgs/acme/audit/events", auth, "")
	_, shown := b.do("GET", "https://"+b.srv.AdminAddr()+"/admin/v1/audit/events/"+ev.ID, auth, "")
	if !strings.Contains(list, "crypto.byok_supplied") || !strings.Contains(shown, "crypto.byok_supplied") {
		t.Fatalf("the event is not listed or shown: %s %s", list, shown)
	}
	for _, s := range secrets {
		for where, text := range map[string]string{"stored event": string(stored) + string(ev.Meta), "export": string(export), "listing": list, "show": shown} {
			if strings.Contains(text, s) {
				t.Errorf("the %s holds %q, a form of the key or derived from it", where, s)
			}
		}
	}
	if r, err := audit.Verify(ctx, b.store, a.orgID, b.srv.Keyring(), audit.StoredSecrets(b.store, b.srv.Keyring())); err != nil || r.Break != nil {
		t.Fatalf("Verify = %+v, %v", r, err)
	}
}
