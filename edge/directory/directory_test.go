package directory_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/apikey"
	"github.com/persiv/codex/edge/directory"
	"github.com/persiv/codex/edge/keyring"
	"github.com/persiv/codex/edge/keyring/local"
	"github.com/persiv/codex/edge/store/sqlite"
)

// counting wraps the real store to count key lookups. When hold is set,
// each lookup, having read the store, waits for it to be closed before it
// returns: a test can make a change land between the read and its use.
type counting struct {
	*sqlite.DB
	lookups atomic.Int64
	read    chan struct{} // told when a held lookup has read the store
	hold    chan struct{}
	kr      *keyring.Keyring // the directory's
}

func (c *counting) KeyByHash(ctx context.Context, h [32]byte) (edge.APIKey, error) {
	c.lookups.Add(1)
	k, err := c.DB.KeyByHash(ctx, h)
	if c.hold != nil {
		c.read <- struct{}{}
		<-c.hold
	}
	return k, err
}

func setup(t *testing.T) (*counting, *directory.Directory, string) {
	t.Helper()
	db, err := sqlite.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	st := &counting{DB: db}
	org := edge.Org{ID: apikey.NewID("org_"), Name: "acme"}
	if err := db.CreateOrg(context.Background(), org); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"OPENAI_KEY": "sk-one"}
	master, _, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	kr, err := keyring.New(keyring.Options{Store: db, Master: master})
	if err != nil {
		t.Fatal(err)
	}
	st.kr = kr
	d := directory.New(st, directory.Options{Keys: kr, Getenv: func(k string) string { return env[k] }})
	if err := d.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	return st, d, org.ID
}

func newKey(t *testing.T, st *counting, orgID string) (edge.APIKey, [32]byte) {
	t.Helper()
	s, _ := apikey.Generate()
	k := edge.APIKey{ID: apikey.NewID("key_"), OrgID: orgID, Name: "k", Prefix: apikey.DisplayPrefix(s), Hash: apikey.Hash(s), State: edge.KeyActive}
	if err := st.CreateKey(context.Background(), k); err != nil {
		t.Fatal(err)
	}
	return k, k.Hash
}

func TestResolveCachesAndShares(t *testing.T) {
	t.Parallel()
	st, d, orgID := setup(t)
	ctx := context.Background()
	k, h := newKey(t, st, orgID)
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := d.Resolve(ctx, h)
			if err != nil || got.ID != k.ID || got.OrgID != orgID || got.Org == nil {
				t.Errorf("Resolve = %+v, %v", got, err)
			}
		}()
	}
	wg.Wait()
	for range 10 {
		if _, err := d.Resolve(ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	if n := st.lookups.Load(); n != 1 {
		t.Fatalf("%d store lookups for one key, want 1", n)
	}
}

func TestUnknownKeysAreRememberedUntilAKeyIsCreated(t *testing.T) {
	t.Parallel()
	st, d, orgID := setup(t)
	ctx := context.Background()
	s, _ := apikey.Generate()
	h := apikey.Hash(s)
	for range 3 {
		if _, err := d.Resolve(ctx, h); !errors.Is(err, directory.ErrUnknownKey) {
			t.Fatalf("unknown key: %v", err)
		}
	}
	if n := st.lookups.Load(); n != 1 {
		t.Fatalf("%d lookups of an unknown key, want 1 (then remembered)", n)
	}
	// The same secret created by another process afterwards.
	k := edge.APIKey{ID: apikey.NewID("key_"), OrgID: orgID, Name: "late", Prefix: apikey.DisplayPrefix(s), Hash: h, State: edge.KeyActive}
	if err := st.CreateKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	if err := d.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := d.Resolve(ctx, h); err != nil || got.ID != k.ID {
		t.Fatalf("key created elsewhere: %+v, %v", got, err)
	}
}

func TestRevocation(t *testing.T) {
	t.Parallel()
	st, d, orgID := setup(t)
	ctx := context.Background()
	k1, h1 := newKey(t, st, orgID)
	k2, h2 := newKey(t, st, orgID)
	for _, h := range [][32]byte{h1, h2} {
		if _, err := d.Resolve(ctx, h); err != nil {
			t.Fatal(err)
		}
	}

	if err := d.Revoke(ctx, orgID, k1.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Resolve(ctx, h1); !errors.Is(err, directory.ErrUnknownKey) {
		t.Fatalf("revoked here, still resolves: %v", err)
	}
	// Revoked by another process: gone after the next Sync.
	if err := st.RevokeKey(ctx, orgID, k2.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Resolve(ctx, h2); err != nil {
		t.Fatal("cached key should still resolve before the feed is read")
	}
	if err := d.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Resolve(ctx, h2); !errors.Is(err, directory.ErrUnknownKey) {
		t.Fatalf("revoked elsewhere, still resolves after Sync: %v", err)
	}
}

func TestProviderSettingsFollowTheFeed(t *testing.T) {
	t.Parallel()
	st, d, orgID := setup(t)
	ctx := context.Background()
	_, h := newKey(t, st, orgID)
	k, _ := d.Resolve(ctx, h)
	if _, ok := k.Org.Upstream(edge.OpenAI); ok {
		t.Fatal("upstream before any provider was set")
	}
	if err := st.SetProvider(ctx, edge.ProviderConfig{OrgID: orgID, Provider: edge.OpenAI, BaseURL: "http://127.0.0.1:9/", APIKeyEnv: "OPENAI_KEY"}); err != nil {
		t.Fatal(err)
	}
	if err := d.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	k, _ = d.Resolve(ctx, h)
	u, ok := k.Org.Upstream(edge.OpenAI)
	if !ok || u.BaseURL != "http://127.0.0.1:9" || u.Credential != "sk-one" || u.CredentialSource != "OPENAI_KEY" {
		t.Fatalf("upstream %+v %v", u, ok)
	}
	if _, ok := k.Org.Upstream(edge.Anthropic); ok {
		t.Fatal("anthropic configured out of nowhere")
	}
}

// TestAuditLevels: a key's level wins over its org's; a level changed in
// the store applies through the change feed, or at once with ForgetOrg.
func TestAuditLevels(t *testing.T) {
	st, d, orgID := setup(t)
	ctx := context.Background()
	k1, h1 := newKey(t, st, orgID)
	k2, _ := newKey(t, st, orgID)
	k, _ := d.Resolve(ctx, h1)
	if l := k.Org.AuditLevel(k1.ID); l != edge.AuditNone {
		t.Fatalf("level with nothing set: %q", l)
	}
	for _, s := range []edge.AuditSetting{{OrgID: orgID, Level: edge.AuditHash}, {OrgID: orgID, KeyID: k2.ID, Level: edge.AuditFull}} {
		if err := st.SetAuditLevel(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if k, _ = d.Resolve(ctx, h1); k.Org.AuditLevel(k1.ID) != edge.AuditNone {
		t.Fatal("the level changed before the feed was read")
	}
	if err := d.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	k, _ = d.Resolve(ctx, h1)
	if a, b := k.Org.AuditLevel(k1.ID), k.Org.AuditLevel(k2.ID); a != edge.AuditHash || b != edge.AuditFull {
		t.Fatalf("levels %q %q, want hash (org) and full (key)", a, b)
	}
	if err := st.SetAuditLevel(ctx, edge.AuditSetting{OrgID: orgID, Level: edge.AuditNone}); err != nil {
		t.Fatal(err)
	}
	d.ForgetOrg(orgID)
	if k, _ = d.Resolve(ctx, h1); k.Org.AuditLevel(k1.ID) != edge.AuditNone {
		t.Fatal("ForgetOrg did not apply the new level")
	}
}

func TestStoreDownKeepsKnownKeys(t *testing.T) {
	t.Parallel()
	st, d, orgID := setup(t)
	ctx := context.Background()
	_, h := newKey(t, st, orgID)
	if _, err := d.Resolve(ctx, h); err != nil {
		t.Fatal(err)
	}
	st.DB.Close()
	if _, err := d.Resolve(ctx, h); err != nil {
		t.Fatalf("known key with the store closed: %v", err)
	}
	s, _ := apikey.Generate()
	if _, err := d.Resolve(ctx, apikey.Hash(s)); err == nil || errors.Is(err, directory.ErrUnknownKey) {
		t.Fatalf("unknown key with the store closed: %v, want a store error (not 'unknown')", err)
	}
	if err := d.Sync(ctx); err == nil {
		t.Fatal("Sync with the store closed succeeded")
	}
}

// A key revoked while a lookup of it is in flight must not be cached as
// active by that lookup.
func TestRevocationDuringLookup(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name   string
		revoke bool // else: the key is created while its lookup is in flight
	}{{"revoked", true}, {"created", false}} {
		t.Run(c.name, func(t *testing.T) {
			st, d, orgID := setup(t)
			ctx := context.Background()
			var k edge.APIKey
			var h [32]byte
			if c.revoke {
				k, h = newKey(t, st, orgID)
			} else {
				s, _ := apikey.Generate()
				h = apikey.Hash(s)
				k = edge.APIKey{ID: apikey.NewID("key_"), OrgID: orgID, Name: "k", Prefix: apikey.DisplayPrefix(s), Hash: h, State: edge.KeyActive}
			}
			st.read, st.hold = make(chan struct{}), make(chan struct{})
			done := make(chan error)
			go func() {
				_, err := d.Resolve(ctx, h)
				done <- err
			}()
			<-st.read // the lookup has read the key's old state
			if c.revoke {
				if err := st.RevokeKey(ctx, orgID, k.ID, time.Now()); err != nil {
					t.Fatal(err)
				}
			} else if err := st.CreateKey(ctx, k); err != nil {
				t.Fatal(err)
			}
			if err := d.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			close(st.hold)
			// Whatever it answered, it raced the change.
			t.Logf("the racing lookup answered %v", <-done)
			st.hold = nil
			_, err := d.Resolve(ctx, h)
			if c.revoke && !errors.Is(err, directory.ErrUnknownKey) {
				t.Fatalf("revoked key still resolves after the feed was applied: %v", err)
			}
			if !c.revoke && err != nil {
				t.Fatalf("created key does not resolve after the feed was applied: %v", err)
			}
		})
	}
}

// stored returns fixed provider settings, as rows written before the
// rules on them existed (or by hand) would read.
type stored struct {
	*sqlite.DB
	pcs []edge.ProviderConfig
}

func (s stored) Providers(context.Context, string) ([]edge.ProviderConfig, error) { return s.pcs, nil }

// Issue 13, finding 7: a setting that names the edge's own secret as the
// provider key, or plain http off loopback without the operator's
// allowance, is refused when it loads: no credential is read, so nothing
// is sent.
func TestLoadRefusesProviderSettings(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"CODEX_BYOK_KEY": "the-master-key", "AWS_SECRET_ACCESS_KEY": "aws-secret",
		"OPENAI_ORG_KEY": "sk-denied", "OPENAI_KEY": "sk-one",
	}
	cases := []struct {
		name string
		pc   edge.ProviderConfig
		deny []string
		want string // the credential read, "" for refused
	}{
		{"codex variable", edge.ProviderConfig{APIKeyEnv: "CODEX_BYOK_KEY"}, nil, ""},
		{"aws variable", edge.ProviderConfig{APIKeyEnv: "AWS_SECRET_ACCESS_KEY"}, nil, ""},
		{"operator deny prefix", edge.ProviderConfig{APIKeyEnv: "OPENAI_ORG_KEY"}, []string{"OPENAI_ORG_*"}, ""},
		{"operator deny name", edge.ProviderConfig{APIKeyEnv: "OPENAI_KEY"}, []string{"openai_key"}, ""},
		{"plain http off loopback", edge.ProviderConfig{APIKeyEnv: "OPENAI_KEY", BaseURL: "http://api.openai.com"}, nil, ""},
		{"plain http allowed", edge.ProviderConfig{APIKeyEnv: "OPENAI_KEY", BaseURL: "http://llm.internal:8080", AllowInsecureHTTP: true}, nil, "sk-one"},
		{"plain http to loopback", edge.ProviderConfig{APIKeyEnv: "OPENAI_KEY", BaseURL: "http://127.0.0.1:9999"}, nil, "sk-one"},
		{"https", edge.ProviderConfig{APIKeyEnv: "OPENAI_KEY", BaseURL: "https://api.openai.com"}, []string{"OPENAI_ORG_*"}, "sk-one"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			db, err := sqlite.Open(context.Background(), t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			org := edge.Org{ID: apikey.NewID("org_"), Name: "acme"}
			if err := db.CreateOrg(context.Background(), org); err != nil {
				t.Fatal(err)
			}
			master, _, err := local.Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			kr, err := keyring.New(keyring.Options{Store: db, Master: master})
			if err != nil {
				t.Fatal(err)
			}
			pc := c.pc
			pc.OrgID, pc.Provider = org.ID, edge.OpenAI
			d := directory.New(stored{DB: db, pcs: []edge.ProviderConfig{pc}}, directory.Options{
				Keys: kr, Getenv: func(k string) string { return env[k] }, APIKeyEnvDeny: c.deny,
			})
			o, err := d.Org(context.Background(), org.ID)
			if err != nil {
				t.Fatal(err)
			}
			u, ok := o.Upstream(edge.OpenAI)
			if !ok || u.Credential != c.want {
				t.Fatalf("upstream %v: credential %q, want %q", ok, u.Credential, c.want)
			}
		})
	}
}

// TestOrgDeletedElsewhere: an org deleted by another process (orgs
// delete) leaves "key" entries with no org in the change feed; after the
// next Sync none of its cached keys resolves.
func TestOrgDeletedElsewhere(t *testing.T) {
	t.Parallel()
	st, d, orgID := setup(t)
	ctx := context.Background()
	_, h1 := newKey(t, st, orgID)
	_, h2 := newKey(t, st, orgID)
	for _, h := range [][32]byte{h1, h2} {
		if _, err := d.Resolve(ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.DeleteOrg(ctx, edge.OrgDeletion{OrgID: orgID, Actor: "test", Via: "cli"}); err != nil {
		t.Fatal(err)
	}
	if err := d.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	for _, h := range [][32]byte{h1, h2} {
		if _, err := d.Resolve(ctx, h); !errors.Is(err, directory.ErrUnknownKey) {
			t.Fatalf("a key of the deleted org still resolves after Sync: %v", err)
		}
	}
}

// orgLoads counts how often an org's state is read from the store.
type orgLoads struct {
	*counting
	loads atomic.Int64
}

func (o *orgLoads) FingerprintSecret(ctx context.Context, orgID string) ([]byte, error) {
	o.loads.Add(1)
	return o.counting.FingerprintSecret(ctx, orgID)
}

// An org's state that expires is reloaded once, in place: its keys are
// not dropped and read again (at 100k cached keys the drop was a scan of
// them all on the request path), and they see the reloaded state.
func TestExpiryReloadsTheOrgInPlace(t *testing.T) {
	t.Parallel()
	st, _, orgID := setup(t)
	ctx := context.Background()
	ol := &orgLoads{counting: st}
	d := directory.New(ol, directory.Options{Keys: st.kr, Lifetime: 300 * time.Millisecond})
	_, h1 := newKey(t, st, orgID)
	_, h2 := newKey(t, st, orgID)
	first := map[[32]byte]*directory.Org{}
	for _, h := range [][32]byte{h1, h2} {
		k, err := d.Resolve(ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		first[h] = k.Org
	}
	if n, l := st.lookups.Load(), ol.loads.Load(); n != 2 || l != 1 {
		t.Fatalf("first use: %d key lookups and %d org loads, want 2 and 1", n, l)
	}
	time.Sleep(400 * time.Millisecond) // past the org's Lifetime
	if _, ok := d.Cached(h1); ok {
		t.Fatal("Cached returned a key whose org's state expired")
	}
	for _, h := range [][32]byte{h1, h2} {
		k, err := d.Resolve(ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		if k.Org == first[h] {
			t.Fatal("a key still holds its org's expired state")
		}
	}
	if n, l := st.lookups.Load(), ol.loads.Load(); n != 2 || l != 2 {
		t.Fatalf("after expiry: %d key lookups and %d org loads, want 2 (keys kept) and 2 (one reload)", n, l)
	}
	if _, ok := d.Cached(h2); !ok {
		t.Fatal("a key whose org was reloaded is not served from memory")
	}
}

// sealFails is a sealer whose Seal fails while fail is set, as a revoked
// master key's does.
type sealFails struct {
	directory.Sealer
	fail atomic.Bool
}

func (s *sealFails) Seal(ctx context.Context, orgID string, p keyring.Purpose, rec string, plain []byte) ([]byte, error) {
	if s.fail.Load() {
		return nil, errors.New("master key refuses")
	}
	return s.Sealer.Seal(ctx, orgID, p, rec, plain)
}

// An org whose fingerprint secret cannot be sealed fingerprints with a
// process-local secret; reloads (every UnreadableRetry) keep it, so its
// fingerprints, and so its cache hits, survive them.
func TestProcessLocalFingerprintSecretOutlivesReloads(t *testing.T) {
	t.Parallel()
	st, _, orgID := setup(t)
	ctx := context.Background()
	sf := &sealFails{Sealer: st.kr}
	sf.fail.Store(true)
	d := directory.New(st, directory.Options{Keys: sf, UnreadableRetry: 300 * time.Millisecond})
	_, h := newKey(t, st, orgID)
	body := []byte(`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`)
	sum := func() (fp [32]byte, org *directory.Org) {
		k, err := d.Resolve(ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		s, _, err := k.Org.Fingerprinter.Sum("openai", "/v1/chat/completions", body)
		if err != nil {
			t.Fatal(err)
		}
		return s, k.Org
	}
	fp1, org1 := sum()
	time.Sleep(400 * time.Millisecond) // past UnreadableRetry
	fp2, org2 := sum()
	if org1 == org2 {
		t.Fatal("the org's state was not reloaded")
	}
	if fp1 != fp2 {
		t.Fatal("the process-local fingerprint secret changed on reload")
	}
	if sealed, err := st.FingerprintSecret(ctx, orgID); err != nil || sealed != nil {
		t.Fatalf("a secret was stored while sealing failed: %x, %v", sealed, err)
	}
	// The master key is back: the secret is sealed and stored, and the
	// local one is dropped.
	sf.fail.Store(false)
	time.Sleep(400 * time.Millisecond)
	fp3, _ := sum()
	if sealed, err := st.FingerprintSecret(ctx, orgID); err != nil || sealed == nil {
		t.Fatalf("no secret stored once sealing works: %v", err)
	}
	if fp3 == fp1 {
		t.Fatal("still fingerprinting with the process-local secret")
	}
}
