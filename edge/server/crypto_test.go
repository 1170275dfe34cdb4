package server_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/config"
	"github.com/persiv/codex/edge/fakeprovider"
	"github.com/persiv/codex/edge/internal/testutil"
	"github.com/persiv/codex/edge/keyring"
	"github.com/persiv/codex/edge/store/storetest"
)

// sealProvider stores org's credential for both providers sealed by kr, as
// `providers set --api-key-stdin` does.
func sealProvider(t *testing.T, h *harness, kr *keyring.Keyring, tn tenant, key string) {
	t.Helper()
	for _, p := range []edge.Provider{edge.OpenAI, edge.Anthropic} {
		sealed, err := kr.Seal(context.Background(), tn.orgID, keyring.PurposeCredential, edge.CredentialRecord(p), []byte(key))
		if err != nil {
			t.Fatal(err)
		}
		if err := h.store.SetProvider(context.Background(), edge.ProviderConfig{OrgID: tn.orgID, Provider: p, BaseURL: h.fakeURL, SealedKey: sealed}); err != nil {
			t.Fatal(err)
		}
	}
}

func status(t *testing.T, h *harness, key string) (int, []byte) {
	t.Helper()
	st, _, body := raw(t, "POST", h.base+"/v1/chat/completions", map[string]string{"Authorization": "Bearer " + key}, chatBody)
	return st, body
}

func TestSealedCredentialsAndShred(t *testing.T) {
	h := newHarness(t, fakeprovider.Options{}, nil)
	a, b := h.addOrg("a"), h.addOrg("b")
	kr := h.srv.Keyring()
	const sealedKey = "sk-sealed-provider-key-for-org-a-7f9e2c"
	sealProvider(t, h, kr, a, sealedKey)
	testutil.Eventually(t, 10*time.Second, "the sealed credential to be used", func() bool {
		st, _ := status(t, h, a.key)
		reqs := h.fake.Requests()
		return st == 200 && reqs[len(reqs)-1].Header.Get("Authorization") == "Bearer "+sealedKey
	})

	// Shred org a: its credential is gone at once on this instance, and
	// requests are answered 503 until it is set again; org b is untouched.
	if _, err := kr.Shred(context.Background(), a.orgID); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "503 after the shred", func() bool {
		st, body := status(t, h, a.key)
		if st == 503 {
			shape(t, edge.OpenAI, body, "server_error")
		}
		return st == 503
	})
	if st, body := status(t, h, b.key); st != 200 {
		t.Fatalf("other org after the shred: %d %s", st, body)
	}
	sealProvider(t, h, kr, a, sealedKey)
	testutil.Eventually(t, 10*time.Second, "the credential set again to work", func() bool { st, _ := status(t, h, a.key); return st == 200 })
	storetest.ScanDirForCanaries(t, h.cfg.DataDir, sealedKey)
}

// TestBYOKVersionRemoved restarts the edge without the BYOK key version
// that wrapped an org's data key: the edge starts and serves, the org's
// credential is unreadable (503) while other orgs keep working, and
// configuring the old version again restores it.
func TestBYOKVersionRemoved(t *testing.T) {
	k1 := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))
	k2 := hex.EncodeToString(bytes.Repeat([]byte{2}, 32))
	h := newHarnessEnv(t, fakeprovider.Options{}, func(c *config.Config) { c.KEK = "byok" }, map[string]string{"CODEX_BYOK_KEY": k1})
	a := h.addOrg("a")
	sealProvider(t, h, h.srv.Keyring(), a, "sk-under-version-one")
	testutil.Eventually(t, 10*time.Second, "the sealed credential to work", func() bool { st, _ := status(t, h, a.key); return st == 200 })

	// Rotated to k2 with k1 removed: content under k1 is unreadable.
	h.restart(map[string]string{"CODEX_BYOK_KEY": k2})
	if st, body := status(t, h, a.key); st != 503 || !strings.Contains(string(body), "provider_credential_unavailable") {
		t.Fatalf("with the wrapping key version removed: %d %s", st, body)
	}
	b := h.addOrg("b") // new orgs get data keys under k2 and work
	sealProvider(t, h, h.srv.Keyring(), b, "sk-under-version-two")
	testutil.Eventually(t, 10*time.Second, "an org keyed under the new version to work", func() bool { st, _ := status(t, h, b.key); return st == 200 })

	// k1 configured again as a previous version: readable again.
	h.restart(map[string]string{"CODEX_BYOK_KEY": k2, "CODEX_BYOK_PREVIOUS_KEYS": k1})
	if st, body := status(t, h, a.key); st != 200 {
		t.Fatalf("with the old version back: %d %s", st, body)
	}
	if st, body := status(t, h, b.key); st != 200 {
		t.Fatalf("org b after the second restart: %d %s", st, body)
	}
	storetest.ScanDirForCanaries(t, h.cfg.DataDir, "sk-under-version-one", "sk-under-version-two", k1, k2)
}
