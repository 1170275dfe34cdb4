// Package storetest is the contract test suite of edge.Store: every store
// (SQLite, Postgres) runs the same Run, so they behave alike.
//
// The suite uses only the edge.Store interface. It does not assume the store
// is empty: each subtest makes its own orgs with random ids and names, so a
// store shared between subtests, or with other tests, works too. Times are
// compared at microsecond precision, the finest Postgres keeps.
package storetest

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/provider/openai"
)

// Run runs the contract suite. open returns a store for one subtest; it
// should close it with t.Cleanup.
func Run(t *testing.T, open func(t *testing.T) edge.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s edge.Store)
	}{
		{"CreateAndListOrgs", testCreateAndListOrgs},
		{"CreateOrgInvalid", testCreateOrgInvalid},
		{"DuplicateOrg", testDuplicateOrg},
		{"OrgNotFound", testOrgNotFound},
		{"FingerprintSecret", testFingerprintSecret},
		{"OrgMasterKey", testOrgMasterKey},
		{"ProviderSealedKey", testProviderSealedKey},
		{"CreateKeyAndLookUp", testCreateKeyAndLookUp},
		{"CreateKeyConflicts", testCreateKeyConflicts},
		{"CreateKeyUnknownOrg", testCreateKeyUnknownOrg},
		{"KeyNotFound", testKeyNotFound},
		{"KeysScopedByOrg", testKeysScopedByOrg},
		{"RevokeKey", testRevokeKey},
		{"RevokeKeyOfOtherOrg", testRevokeKeyOfOtherOrg},
		{"SetProvider", testSetProvider},
		{"SetProviderInvalid", testSetProviderInvalid},
		{"ProvidersScopedByOrg", testProvidersScopedByOrg},
		{"InsertRequestsRoundTrip", testInsertRequestsRoundTrip},
		{"InsertRequestsBatch", testInsertRequestsBatch},
		{"InsertRequestsAtomic", testInsertRequestsAtomic},
		{"RequestsSinceAndLimit", testRequestsSinceAndLimit},
		{"RequestsScopedByOrg", testRequestsScopedByOrg},
		{"RequestsInvalidLimit", testRequestsInvalidLimit},
		{"DeleteRequestsBefore", testDeleteRequestsBefore},
		{"ChangeFeed", testChangeFeed},
		{"MemoryVersions", testMemoryVersions},
		{"MemoryKeysAndOrder", testMemoryKeysAndOrder},
		{"MemoryChanges", testMemoryChanges},
		{"Ping", testPing},
		{"ShredSealed", testShredSealed},
		{"DeleteOrg", testDeleteOrg},
	}
	tests = append(tests, governanceTests()...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, open(t))
		})
	}
}

// now is a time the slowest store keeps exactly.
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

func randomID(prefix string) string {
	b := make([]byte, 8)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

func randomSecret() []byte {
	b := make([]byte, 32)
	rand.Read(b)
	return b
}

func newOrg(t *testing.T, s edge.Store) edge.Org {
	t.Helper()
	o := edge.Org{ID: randomID("org_"), Name: randomID("name-"), CreatedAt: now()}
	if err := s.CreateOrg(t.Context(), o); err != nil {
		t.Fatalf("CreateOrg: %v", err)
	}
	return o
}

func newKey(t *testing.T, s edge.Store, orgID string) edge.APIKey {
	t.Helper()
	secret := randomID("pk_test_")
	k := edge.APIKey{
		ID:        randomID("key_"),
		OrgID:     orgID,
		Name:      "ci",
		Prefix:    secret[:12],
		Hash:      sha256.Sum256([]byte(secret)),
		State:     edge.KeyActive,
		CreatedAt: now(),
	}
	if err := s.CreateKey(t.Context(), k); err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	return k
}

func wantErr(t *testing.T, what string, err, kind error) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("%s: error %v, want %v", what, err, kind)
	}
}

func sameOrg(a, b edge.Org) bool {
	return a.ID == b.ID && a.Name == b.Name && a.CreatedAt.Equal(b.CreatedAt)
}

func sameKey(a, b edge.APIKey) bool {
	return a.ID == b.ID && a.OrgID == b.OrgID && a.Name == b.Name && a.Prefix == b.Prefix &&
		a.Hash == b.Hash && a.State == b.State &&
		a.CreatedAt.Equal(b.CreatedAt) && a.RevokedAt.Equal(b.RevokedAt)
}

func sameProvider(a, b edge.ProviderConfig) bool {
	return a.OrgID == b.OrgID && a.Provider == b.Provider && a.BaseURL == b.BaseURL &&
		a.APIKeyEnv == b.APIKeyEnv && a.AllowInsecureHTTP == b.AllowInsecureHTTP && a.UpdatedAt.Equal(b.UpdatedAt)
}

func sameRequest(a, b edge.RequestRecord) bool {
	if !a.Time.Equal(b.Time) {
		return false
	}
	a.Time, b.Time = time.Time{}, time.Time{}
	// Memories and Audit are for telemetry and not stored.
	a.Memories, b.Memories, a.Audit, b.Audit = nil, nil, "", ""
	return reflect.DeepEqual(a, b)
}

func testCreateAndListOrgs(t *testing.T, s edge.Store) {
	ctx := t.Context()
	a, b := newOrg(t, s), newOrg(t, s)
	for _, want := range []edge.Org{a, b} {
		got, err := s.Org(ctx, want.ID)
		if err != nil {
			t.Fatalf("Org(%s): %v", want.ID, err)
		}
		if !sameOrg(got, want) {
			t.Errorf("Org(%s) = %+v, want %+v", want.ID, got, want)
		}
	}
	orgs, err := s.Orgs(ctx)
	if err != nil {
		t.Fatalf("Orgs: %v", err)
	}
	for _, want := range []edge.Org{a, b} {
		if !slices.ContainsFunc(orgs, func(o edge.Org) bool { return sameOrg(o, want) }) {
			t.Errorf("Orgs() = %+v, missing %+v", orgs, want)
		}
	}

	// A zero creation time is filled in by the store.
	before := now()
	c := edge.Org{ID: randomID("org_"), Name: randomID("name-")}
	if err := s.CreateOrg(ctx, c); err != nil {
		t.Fatalf("CreateOrg without time: %v", err)
	}
	got, err := s.Org(ctx, c.ID)
	if err != nil {
		t.Fatalf("Org: %v", err)
	}
	if got.CreatedAt.Before(before) || got.CreatedAt.After(time.Now().Add(time.Second)) {
		t.Errorf("CreatedAt = %v, want about %v", got.CreatedAt, before)
	}
}

func testCreateOrgInvalid(t *testing.T, s edge.Store) {
	tests := []struct {
		name string
		org  edge.Org
	}{
		{"no id", edge.Org{Name: randomID("name-")}},
		{"no name", edge.Org{ID: randomID("org_")}},
	}
	for _, tt := range tests {
		err := s.CreateOrg(t.Context(), tt.org)
		wantErr(t, "CreateOrg "+tt.name, err, edge.ErrInvalid)
	}
}

func testDuplicateOrg(t *testing.T, s edge.Store) {
	ctx := t.Context()
	a := newOrg(t, s)
	err := s.CreateOrg(ctx, edge.Org{ID: randomID("org_"), Name: a.Name, CreatedAt: now()})
	wantErr(t, "CreateOrg with a taken name", err, edge.ErrConflict)
	err = s.CreateOrg(ctx, edge.Org{ID: a.ID, Name: randomID("name-"), CreatedAt: now()})
	wantErr(t, "CreateOrg with a taken id", err, edge.ErrConflict)

	got, err := s.Org(ctx, a.ID)
	if err != nil || !sameOrg(got, a) {
		t.Errorf("after conflicts Org = %+v, %v; want %+v", got, err, a)
	}
}

func testOrgNotFound(t *testing.T, s edge.Store) {
	ctx := t.Context()
	_, err := s.Org(ctx, randomID("org_"))
	wantErr(t, "Org of unknown id", err, edge.ErrNotFound)
	_, err = s.FingerprintSecret(ctx, randomID("org_"))
	wantErr(t, "FingerprintSecret of unknown org", err, edge.ErrNotFound)
}

func testFingerprintSecret(t *testing.T, s edge.Store) {
	ctx := t.Context()
	secrets := map[string][]byte{}
	for range 3 {
		o := edge.Org{ID: randomID("org_"), Name: randomID("name-"), CreatedAt: now()}
		if err := s.CreateOrg(ctx, o); err != nil {
			t.Fatalf("CreateOrg: %v", err)
		}
		if got, err := s.FingerprintSecret(ctx, o.ID); err != nil || got != nil {
			t.Fatalf("FingerprintSecret of a new org = %x, %v; want nil", got, err)
		}
		secrets[o.ID] = randomSecret()
		got, err := s.SwapFingerprintSecret(ctx, o.ID, nil, secrets[o.ID])
		if err != nil || string(got) != string(secrets[o.ID]) {
			t.Fatalf("first SwapFingerprintSecret = %x, %v", got, err)
		}
	}
	for id, want := range secrets {
		got, err := s.FingerprintSecret(ctx, id)
		if err != nil {
			t.Fatalf("FingerprintSecret(%s): %v", id, err)
		}
		if string(got) != string(want) {
			t.Errorf("FingerprintSecret(%s) = %x, want %x", id, got, want)
		}
		// A swap from a stale value loses and reports the stored one.
		got, err = s.SwapFingerprintSecret(ctx, id, nil, randomSecret())
		if err != nil || string(got) != string(want) {
			t.Errorf("stale swap = %x, %v; want the stored %x", got, err, want)
		}
		next := randomSecret()
		if got, err = s.SwapFingerprintSecret(ctx, id, want, next); err != nil || string(got) != string(next) {
			t.Errorf("swap from the current value = %x, %v", got, err)
		}
	}
	_, err := s.SwapFingerprintSecret(ctx, randomID("org_"), nil, randomSecret())
	wantErr(t, "SwapFingerprintSecret of unknown org", err, edge.ErrNotFound)
}

func testCreateKeyAndLookUp(t *testing.T, s edge.Store) {
	ctx := t.Context()
	o := newOrg(t, s)
	k := newKey(t, s, o.ID)

	byHash, err := s.KeyByHash(ctx, k.Hash)
	if err != nil {
		t.Fatalf("KeyByHash: %v", err)
	}
	if !sameKey(byHash, k) {
		t.Errorf("KeyByHash = %+v, want %+v", byHash, k)
	}
	byID, err := s.KeyByID(ctx, k.ID)
	if err != nil {
		t.Fatalf("KeyByID: %v", err)
	}
	if !sameKey(byID, k) {
		t.Errorf("KeyByID = %+v, want %+v", byID, k)
	}
	if !byID.RevokedAt.IsZero() {
		t.Errorf("active key has RevokedAt %v", byID.RevokedAt)
	}
}

func testCreateKeyConflicts(t *testing.T, s edge.Store) {
	ctx := t.Context()
	o := newOrg(t, s)
	k := newKey(t, s, o.ID)

	sameHash := k
	sameHash.ID = randomID("key_")
	wantErr(t, "CreateKey with a taken hash", s.CreateKey(ctx, sameHash), edge.ErrConflict)

	sameID := k
	sameID.Hash = sha256.Sum256([]byte(randomID("pk_")))
	wantErr(t, "CreateKey with a taken id", s.CreateKey(ctx, sameID), edge.ErrConflict)

	keys, err := s.Keys(ctx, o.ID)
	if err != nil {
		t.Fatalf("Keys: %v", err)
	}
	if len(keys) != 1 || !sameKey(keys[0], k) {
		t.Errorf("after conflicts Keys = %+v, want only %+v", keys, k)
	}
}

func testCreateKeyUnknownOrg(t *testing.T, s edge.Store) {
	k := edge.APIKey{
		ID:        randomID("key_"),
		OrgID:     randomID("org_"),
		Hash:      sha256.Sum256([]byte(randomID("pk_"))),
		State:     edge.KeyActive,
		CreatedAt: now(),
	}
	wantErr(t, "CreateKey of an unknown org", s.CreateKey(t.Context(), k), edge.ErrNotFound)
	_, err := s.KeyByID(t.Context(), k.ID)
	wantErr(t, "KeyByID after failed CreateKey", err, edge.ErrNotFound)
}

func testKeyNotFound(t *testing.T, s edge.Store) {
	ctx := t.Context()
	o := newOrg(t, s)
	newKey(t, s, o.ID)
	_, err := s.KeyByHash(ctx, sha256.Sum256([]byte(randomID("pk_"))))
	wantErr(t, "KeyByHash of unknown hash", err, edge.ErrNotFound)
	_, err = s.KeyByID(ctx, randomID("key_"))
	wantErr(t, "KeyByID of unknown id", err, edge.ErrNotFound)
}

func testKeysScopedByOrg(t *testing.T, s edge.Store) {
	ctx := t.Context()
	a, b, empty := newOrg(t, s), newOrg(t, s), newOrg(t, s)
	var wantA, wantB []edge.APIKey
	for i := range 3 {
		wantA = append(wantA, newKey(t, s, a.ID))
		if i < 2 {
			wantB = append(wantB, newKey(t, s, b.ID))
		}
	}
	// Keys lists oldest first, then by id.
	for _, keys := range [][]edge.APIKey{wantA, wantB} {
		slices.SortStableFunc(keys, func(x, y edge.APIKey) int {
			if c := x.CreatedAt.Compare(y.CreatedAt); c != 0 {
				return c
			}
			return strings.Compare(x.ID, y.ID)
		})
	}
	for _, tt := range []struct {
		org  edge.Org
		want []edge.APIKey
	}{{a, wantA}, {b, wantB}, {empty, nil}} {
		got, err := s.Keys(ctx, tt.org.ID)
		if err != nil {
			t.Fatalf("Keys(%s): %v", tt.org.ID, err)
		}
		if !slices.EqualFunc(got, tt.want, sameKey) {
			t.Errorf("Keys(%s) = %+v, want %+v", tt.org.ID, got, tt.want)
		}
	}
	got, err := s.Keys(ctx, randomID("org_"))
	if err != nil || len(got) != 0 {
		t.Errorf("Keys(unknown org) = %+v, %v; want none", got, err)
	}
}

func testRevokeKey(t *testing.T, s edge.Store) {
	ctx := t.Context()
	o := newOrg(t, s)
	k, other := newKey(t, s, o.ID), newKey(t, s, o.ID)

	at := now().Add(time.Minute)
	if err := s.RevokeKey(ctx, o.ID, k.ID, at); err != nil {
		t.Fatalf("RevokeKey: %v", err)
	}
	want := k
	want.State, want.RevokedAt = edge.KeyRevoked, at
	for _, lookup := range []func() (edge.APIKey, error){
		func() (edge.APIKey, error) { return s.KeyByID(ctx, k.ID) },
		func() (edge.APIKey, error) { return s.KeyByHash(ctx, k.Hash) },
	} {
		got, err := lookup()
		if err != nil {
			t.Fatalf("look up revoked key: %v", err)
		}
		if !sameKey(got, want) {
			t.Errorf("revoked key = %+v, want %+v", got, want)
		}
	}

	// Revoking again succeeds and keeps the first revocation time.
	if err := s.RevokeKey(ctx, o.ID, k.ID, at.Add(time.Hour)); err != nil {
		t.Fatalf("RevokeKey again: %v", err)
	}
	if got, err := s.KeyByID(ctx, k.ID); err != nil || !sameKey(got, want) {
		t.Errorf("after second revoke = %+v, %v; want %+v", got, err, want)
	}

	// The other key of the org is untouched.
	if got, err := s.KeyByID(ctx, other.ID); err != nil || !sameKey(got, other) {
		t.Errorf("other key = %+v, %v; want %+v", got, err, other)
	}

	err := s.RevokeKey(ctx, o.ID, randomID("key_"), at)
	wantErr(t, "RevokeKey of unknown key", err, edge.ErrNotFound)
}

func testRevokeKeyOfOtherOrg(t *testing.T, s edge.Store) {
	ctx := t.Context()
	a, b := newOrg(t, s), newOrg(t, s)
	k := newKey(t, s, a.ID)
	// A row the caller may not see is not found, so its existence does not leak.
	err := s.RevokeKey(ctx, b.ID, k.ID, now())
	wantErr(t, "RevokeKey through another org", err, edge.ErrNotFound)
	got, err := s.KeyByID(ctx, k.ID)
	if err != nil {
		t.Fatalf("KeyByID: %v", err)
	}
	if got.State != edge.KeyActive || !got.RevokedAt.IsZero() {
		t.Errorf("key after revoke through another org: state %s, revoked at %v; want active", got.State, got.RevokedAt)
	}
}

func testSetProvider(t *testing.T, s edge.Store) {
	ctx := t.Context()
	o := newOrg(t, s)
	oa := edge.ProviderConfig{OrgID: o.ID, Provider: edge.OpenAI, APIKeyEnv: "OPENAI_API_KEY", UpdatedAt: now()}
	an := edge.ProviderConfig{OrgID: o.ID, Provider: edge.Anthropic, BaseURL: "http://127.0.0.1:9999", APIKeyEnv: "ANTHROPIC_KEY", UpdatedAt: now()}
	for _, p := range []edge.ProviderConfig{oa, an} {
		if err := s.SetProvider(ctx, p); err != nil {
			t.Fatalf("SetProvider(%s): %v", p.Provider, err)
		}
	}
	check := func(want ...edge.ProviderConfig) {
		t.Helper()
		got, err := s.Providers(ctx, o.ID)
		if err != nil {
			t.Fatalf("Providers: %v", err)
		}
		slices.SortFunc(got, func(a, b edge.ProviderConfig) int { return strings.Compare(string(a.Provider), string(b.Provider)) })
		slices.SortFunc(want, func(a, b edge.ProviderConfig) int { return strings.Compare(string(a.Provider), string(b.Provider)) })
		if !slices.EqualFunc(got, want, sameProvider) {
			t.Errorf("Providers = %+v, want %+v", got, want)
		}
	}
	check(oa, an)

	// Setting again replaces every field, including clearing the base URL.
	an2 := an
	an2.BaseURL, an2.APIKeyEnv, an2.UpdatedAt = "", "ANTHROPIC_KEY_2", now().Add(time.Second)
	if err := s.SetProvider(ctx, an2); err != nil {
		t.Fatalf("SetProvider overwrite: %v", err)
	}
	check(oa, an2)

	// Plain http off loopback is stored when explicitly allowed, and the
	// allowance is kept (the edge checks it again when it loads).
	oa2 := oa
	oa2.BaseURL, oa2.AllowInsecureHTTP, oa2.UpdatedAt = "http://llm-proxy.internal:8080", true, now().Add(2*time.Second)
	if err := s.SetProvider(ctx, oa2); err != nil {
		t.Fatalf("SetProvider with AllowInsecureHTTP: %v", err)
	}
	check(oa2, an2)
	oa3 := oa2
	oa3.BaseURL, oa3.AllowInsecureHTTP, oa3.UpdatedAt = "https://api.openai.com", false, now().Add(3*time.Second)
	if err := s.SetProvider(ctx, oa3); err != nil {
		t.Fatalf("SetProvider clearing AllowInsecureHTTP: %v", err)
	}
	check(oa3, an2)
}

func testSetProviderInvalid(t *testing.T, s edge.Store) {
	ctx := t.Context()
	o := newOrg(t, s)
	err := s.SetProvider(ctx, edge.ProviderConfig{OrgID: o.ID, Provider: "gemini", APIKeyEnv: "X", UpdatedAt: now()})
	wantErr(t, "SetProvider of unknown provider", err, edge.ErrInvalid)
	err = s.SetProvider(ctx, edge.ProviderConfig{OrgID: randomID("org_"), Provider: edge.OpenAI, APIKeyEnv: "X", UpdatedAt: now()})
	wantErr(t, "SetProvider of unknown org", err, edge.ErrNotFound)
	// Issue 13, finding 7: the edge's own secrets are never a provider key,
	// and a key is not sent over plain http off loopback unless allowed.
	for _, env := range []string{"CODEX_BYOK_KEY", "codex_admin_token", "AWS_SECRET_ACCESS_KEY", "MY-KEY", ""} {
		err = s.SetProvider(ctx, edge.ProviderConfig{OrgID: o.ID, Provider: edge.OpenAI, APIKeyEnv: env, UpdatedAt: now()})
		wantErr(t, "SetProvider with API key variable "+env, err, edge.ErrInvalid)
	}
	for _, base := range []string{"http://api.openai.com", "http://10.0.0.8:8080", "ftp://api.openai.com", "https://user:pw@api.openai.com", "api.openai.com"} {
		err = s.SetProvider(ctx, edge.ProviderConfig{OrgID: o.ID, Provider: edge.OpenAI, BaseURL: base, APIKeyEnv: "OPENAI_API_KEY", UpdatedAt: now()})
		wantErr(t, "SetProvider with base URL "+base, err, edge.ErrInvalid)
	}
	got, err := s.Providers(ctx, o.ID)
	if err != nil || len(got) != 0 {
		t.Errorf("Providers after invalid sets = %+v, %v; want none", got, err)
	}
}

func testProvidersScopedByOrg(t *testing.T, s edge.Store) {
	ctx := t.Context()
	a, b := newOrg(t, s), newOrg(t, s)
	pa := edge.ProviderConfig{OrgID: a.ID, Provider: edge.OpenAI, APIKeyEnv: "A_KEY", UpdatedAt: now()}
	pb := edge.ProviderConfig{OrgID: b.ID, Provider: edge.OpenAI, BaseURL: "https://b.example", APIKeyEnv: "B_KEY", UpdatedAt: now()}
	for _, p := range []edge.ProviderConfig{pa, pb} {
		if err := s.SetProvider(ctx, p); err != nil {
			t.Fatalf("SetProvider: %v", err)
		}
	}
	for _, want := range []edge.ProviderConfig{pa, pb} {
		got, err := s.Providers(ctx, want.OrgID)
		if err != nil {
			t.Fatalf("Providers: %v", err)
		}
		if len(got) != 1 || !sameProvider(got[0], want) {
			t.Errorf("Providers(%s) = %+v, want only %+v", want.OrgID, got, want)
		}
	}
}

// record returns a fully populated record of org at time at.
func record(orgID, keyID string, at time.Time, i int) edge.RequestRecord {
	return edge.RequestRecord{
		ID:       randomID("req_"),
		Time:     at,
		OrgID:    orgID,
		KeyID:    keyID,
		Provider: edge.OpenAI,
		Endpoint: string(openai.ChatCompletions),
		Model:    "gpt-4o-mini",
		Stream:   i%2 == 0,
		Usage: edge.Usage{
			Input:       edge.Known(int64(100 + i)),
			CachedInput: edge.Known(int64(i)),
			Output:      edge.Known(int64(20 + i)),
			Reasoning:   edge.Known(0),
		},
		CostNanoUSD:          int64(1000 * i),
		CostKnown:            true,
		SavedNanoUSD:         int64(10 * i),
		Latency:              time.Duration(i+1) * time.Millisecond,
		UpstreamLatency:      time.Duration(i) * time.Millisecond,
		Status:               200,
		Cache:                edge.CacheMiss,
		Fingerprint:          hex.EncodeToString(randomSecret()),
		MemoryID:             fmt.Sprintf("style@%d,tone@1", i+1),
		MemoryTokensEstimate: int64(30 + i),
	}
}

func testInsertRequestsRoundTrip(t *testing.T, s edge.Store) {
	ctx := t.Context()
	o := newOrg(t, s)
	k := newKey(t, s, o.ID)
	base := now()

	full := record(o.ID, k.ID, base, 1)

	// Unknown stays unknown and known zero stays zero, bucket by bucket.
	unknown := record(o.ID, k.ID, base.Add(time.Millisecond), 2)
	unknown.Usage = edge.Usage{} // nothing reported
	unknown.CostKnown, unknown.CostNanoUSD = false, 0
	unknown.Provider, unknown.Endpoint, unknown.Model = edge.Anthropic, "messages", "claude-sonnet-4"
	unknown.Cache, unknown.Status, unknown.MemoryID, unknown.MemoryTokensEstimate = edge.CacheBypass, 502, "", 0
	unknown.UpstreamLatency = 0

	zero := record(o.ID, k.ID, base.Add(2*time.Millisecond), 3)
	zero.Usage = edge.Usage{
		Input: edge.Known(0), CachedInput: edge.Known(0), CacheWrite: edge.Known(0),
		Output: edge.Known(0), Reasoning: edge.Known(0),
	}
	zero.CostKnown, zero.CostNanoUSD = true, 0
	zero.Cache, zero.SavedNanoUSD = edge.CacheHit, 12345

	mixed := record(o.ID, k.ID, base.Add(3*time.Millisecond), 4)
	mixed.Usage.CacheWrite = edge.Count{} // OpenAI has none
	mixed.Usage.Reasoning = edge.Known(7)

	want := []edge.RequestRecord{full, unknown, zero, mixed}
	if err := s.InsertRequests(ctx, want); err != nil {
		t.Fatalf("InsertRequests: %v", err)
	}
	got, err := s.Requests(ctx, o.ID, time.Time{}, 100)
	if err != nil {
		t.Fatalf("Requests: %v", err)
	}
	if !slices.EqualFunc(got, want, sameRequest) {
		t.Errorf("Requests =\n%+v\nwant\n%+v", got, want)
	}
	if err := s.InsertRequests(ctx, nil); err != nil {
		t.Errorf("InsertRequests(nil) = %v, want nil", err)
	}
}

func testInsertRequestsBatch(t *testing.T, s edge.Store) {
	ctx := t.Context()
	o := newOrg(t, s)
	k := newKey(t, s, o.ID)
	base := now()
	const n = 2500
	recs := make([]edge.RequestRecord, n)
	for i := range recs {
		recs[i] = record(o.ID, k.ID, base.Add(time.Duration(n-i)*time.Microsecond), i)
		if i%3 == 0 {
			recs[i].Usage.Input = edge.Count{}
		}
	}
	if err := s.InsertRequests(ctx, recs); err != nil {
		t.Fatalf("InsertRequests: %v", err)
	}
	got, err := s.Requests(ctx, o.ID, time.Time{}, n+10)
	if err != nil {
		t.Fatalf("Requests: %v", err)
	}
	// Inserted newest first, read back oldest first.
	want := slices.Clone(recs)
	slices.Reverse(want)
	if len(got) != n {
		t.Fatalf("Requests returned %d records, want %d", len(got), n)
	}
	for i := range want {
		if !sameRequest(got[i], want[i]) {
			t.Fatalf("record %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func testInsertRequestsAtomic(t *testing.T, s edge.Store) {
	ctx := t.Context()
	o := newOrg(t, s)
	k := newKey(t, s, o.ID)
	base := now()
	first := record(o.ID, k.ID, base, 0)
	if err := s.InsertRequests(ctx, []edge.RequestRecord{first}); err != nil {
		t.Fatalf("InsertRequests: %v", err)
	}
	// A batch whose last record repeats an id is refused whole.
	batch := []edge.RequestRecord{record(o.ID, k.ID, base.Add(time.Millisecond), 1), first}
	wantErr(t, "InsertRequests with a taken id", s.InsertRequests(ctx, batch), edge.ErrConflict)
	got, err := s.Requests(ctx, o.ID, time.Time{}, 10)
	if err != nil {
		t.Fatalf("Requests: %v", err)
	}
	if len(got) != 1 || !sameRequest(got[0], first) {
		t.Errorf("after refused batch Requests = %+v, want only %+v", got, first)
	}

	// So is a batch with a record of an unknown org.
	batch = []edge.RequestRecord{record(o.ID, k.ID, base.Add(2*time.Millisecond), 3), record(randomID("org_"), k.ID, base, 4)}
	wantErr(t, "InsertRequests of an unknown org", s.InsertRequests(ctx, batch), edge.ErrConflict)
	got, err = s.Requests(ctx, o.ID, time.Time{}, 10)
	if err != nil {
		t.Fatalf("Requests: %v", err)
	}
	if len(got) != 1 {
		t.Errorf("after refused batch Requests = %+v, want only %+v", got, first)
	}

	noID := record(o.ID, k.ID, base, 2)
	noID.ID = ""
	wantErr(t, "InsertRequests without id", s.InsertRequests(ctx, []edge.RequestRecord{noID}), edge.ErrInvalid)
}

func testRequestsSinceAndLimit(t *testing.T, s edge.Store) {
	ctx := t.Context()
	o := newOrg(t, s)
	k := newKey(t, s, o.ID)
	base := now()
	// Two records share each time, so the id decides their order.
	var recs []edge.RequestRecord
	for i := range 10 {
		recs = append(recs, record(o.ID, k.ID, base.Add(time.Duration(i/2)*time.Second), i))
	}
	if err := s.InsertRequests(ctx, recs); err != nil {
		t.Fatalf("InsertRequests: %v", err)
	}
	ordered := slices.Clone(recs)
	slices.SortFunc(ordered, func(a, b edge.RequestRecord) int {
		if c := a.Time.Compare(b.Time); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})

	tests := []struct {
		name  string
		since time.Time
		limit int
		want  []edge.RequestRecord
	}{
		{"all", time.Time{}, 100, ordered},
		{"limit", time.Time{}, 3, ordered[:3]},
		{"since is inclusive", base.Add(2 * time.Second), 100, ordered[4:]},
		{"since and limit", base.Add(time.Second), 3, ordered[2:5]},
		{"since after the last", base.Add(time.Hour), 100, nil},
	}
	for _, tt := range tests {
		got, err := s.Requests(ctx, o.ID, tt.since, tt.limit)
		if err != nil {
			t.Fatalf("%s: Requests: %v", tt.name, err)
		}
		if !slices.EqualFunc(got, tt.want, sameRequest) {
			t.Errorf("%s: Requests ids = %v, want %v", tt.name, ids(got), ids(tt.want))
		}
	}
}

func ids(recs []edge.RequestRecord) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.ID
	}
	return out
}

func testRequestsScopedByOrg(t *testing.T, s edge.Store) {
	ctx := t.Context()
	a, b := newOrg(t, s), newOrg(t, s)
	ka, kb := newKey(t, s, a.ID), newKey(t, s, b.ID)
	base := now()
	ra := []edge.RequestRecord{record(a.ID, ka.ID, base, 0), record(a.ID, ka.ID, base.Add(time.Second), 1)}
	rb := []edge.RequestRecord{record(b.ID, kb.ID, base.Add(time.Millisecond), 2)}
	// One batch may mix orgs: the writer batches across the whole edge.
	if err := s.InsertRequests(ctx, append(slices.Clone(ra), rb...)); err != nil {
		t.Fatalf("InsertRequests: %v", err)
	}
	for _, tt := range []struct {
		org  string
		want []edge.RequestRecord
	}{{a.ID, ra}, {b.ID, rb}, {randomID("org_"), nil}} {
		got, err := s.Requests(ctx, tt.org, time.Time{}, 100)
		if err != nil {
			t.Fatalf("Requests(%s): %v", tt.org, err)
		}
		if !slices.EqualFunc(got, tt.want, sameRequest) {
			t.Errorf("Requests(%s) ids = %v, want %v", tt.org, ids(got), ids(tt.want))
		}
	}
}

func testRequestsInvalidLimit(t *testing.T, s edge.Store) {
	o := newOrg(t, s)
	for _, limit := range []int{0, -1} {
		_, err := s.Requests(t.Context(), o.ID, time.Time{}, limit)
		wantErr(t, fmt.Sprintf("Requests with limit %d", limit), err, edge.ErrInvalid)
	}
}

// allChanges reads the feed after seq to its end, page by page.
func allChanges(t *testing.T, s edge.Store, after int64) []edge.Change {
	t.Helper()
	var out []edge.Change
	for {
		page, err := s.Changes(t.Context(), after)
		if err != nil {
			t.Fatalf("Changes(%d): %v", after, err)
		}
		if len(page) == 0 {
			return out
		}
		for _, c := range page {
			if c.Seq <= after {
				t.Fatalf("Changes(%d) returned seq %d, not after it", after, c.Seq)
			}
			after = c.Seq
		}
		out = append(out, page...)
	}
}

func lastSeq(t *testing.T, s edge.Store) int64 {
	t.Helper()
	all := allChanges(t, s, 0)
	if len(all) == 0 {
		return 0
	}
	return all[len(all)-1].Seq
}

func testChangeFeed(t *testing.T, s edge.Store) {
	ctx := t.Context()
	start := lastSeq(t, s)

	o := newOrg(t, s)
	k := newKey(t, s, o.ID)
	if err := s.SetProvider(ctx, edge.ProviderConfig{OrgID: o.ID, Provider: edge.Anthropic, APIKeyEnv: "K", UpdatedAt: now()}); err != nil {
		t.Fatalf("SetProvider: %v", err)
	}
	if err := s.RevokeKey(ctx, o.ID, k.ID, now()); err != nil {
		t.Fatalf("RevokeKey: %v", err)
	}
	// Failed writes leave no entry.
	if err := s.CreateOrg(ctx, edge.Org{ID: randomID("org_"), Name: o.Name, CreatedAt: now()}); !errors.Is(err, edge.ErrConflict) {
		t.Fatalf("duplicate CreateOrg = %v, want ErrConflict", err)
	}
	if err := s.RevokeKey(ctx, randomID("org_"), k.ID, now()); !errors.Is(err, edge.ErrNotFound) {
		t.Fatalf("RevokeKey through unknown org = %v, want ErrNotFound", err)
	}
	// Request records are not changes.
	if err := s.InsertRequests(ctx, []edge.RequestRecord{record(o.ID, k.ID, now(), 0)}); err != nil {
		t.Fatalf("InsertRequests: %v", err)
	}

	var got []edge.Change
	for _, c := range allChanges(t, s, start) {
		if c.OrgID == o.ID {
			got = append(got, c)
		}
	}
	want := []edge.Change{
		{OrgID: o.ID, Kind: "org", Ref: o.ID},
		{OrgID: o.ID, Kind: "key", Ref: k.ID},
		{OrgID: o.ID, Kind: "provider", Ref: string(edge.Anthropic)},
		{OrgID: o.ID, Kind: "key", Ref: k.ID},
	}
	if len(got) != len(want) {
		t.Fatalf("changes of the org = %+v, want %+v", got, want)
	}
	for i := range want {
		want[i].Seq = got[i].Seq // assigned by the store, checked for order below
		if got[i] != want[i] {
			t.Errorf("change %d = %+v, want %+v", i, got[i], want[i])
		}
		if i > 0 && got[i].Seq <= got[i-1].Seq {
			t.Errorf("change %d has seq %d after seq %d", i, got[i].Seq, got[i-1].Seq)
		}
	}

	// Reading after an entry starts right behind it.
	after := allChanges(t, s, got[1].Seq)
	if len(after) == 0 || after[0].Seq <= got[1].Seq || !slices.ContainsFunc(after, func(c edge.Change) bool { return c == got[3] }) {
		t.Errorf("Changes(%d) = %+v, want entries after it including %+v", got[1].Seq, after, got[3])
	}
	if rest := allChanges(t, s, got[3].Seq); slices.ContainsFunc(rest, func(c edge.Change) bool { return c.OrgID == o.ID }) {
		t.Errorf("Changes after the last entry of the org = %+v, want none of it", rest)
	}
}

func testPing(t *testing.T, s edge.Store) {
	if err := s.Ping(t.Context()); err != nil {
		t.Errorf("Ping: %v", err)
	}
}

func testProviderSealedKey(t *testing.T, s edge.Store) {
	ctx := t.Context()
	o := newOrg(t, s)
	sealed := []byte{1, 2, 3, 0, 255}
	if err := s.SetProvider(ctx, edge.ProviderConfig{OrgID: o.ID, Provider: edge.Anthropic, SealedKey: sealed}); err != nil {
		t.Fatalf("SetProvider with a sealed key: %v", err)
	}
	got, err := s.Providers(ctx, o.ID)
	if err != nil || len(got) != 1 || string(got[0].SealedKey) != string(sealed) || got[0].APIKeyEnv != "" {
		t.Fatalf("Providers = %+v, %v", got, err)
	}
	// Switching to an environment variable drops the sealed key.
	if err := s.SetProvider(ctx, edge.ProviderConfig{OrgID: o.ID, Provider: edge.Anthropic, APIKeyEnv: "ANTHROPIC_API_KEY"}); err != nil {
		t.Fatal(err)
	}
	got, _ = s.Providers(ctx, o.ID)
	if len(got) != 1 || got[0].SealedKey != nil || got[0].APIKeyEnv != "ANTHROPIC_API_KEY" {
		t.Fatalf("after switching to an env var: %+v", got)
	}
	for _, bad := range []edge.ProviderConfig{
		{OrgID: o.ID, Provider: edge.OpenAI},
		{OrgID: o.ID, Provider: edge.OpenAI, APIKeyEnv: "X", SealedKey: sealed},
	} {
		wantErr(t, "SetProvider with zero or two credential sources", s.SetProvider(ctx, bad), edge.ErrInvalid)
	}
}

// testOrgMasterKey: an org's own master key reference is stored at
// creation, changed and cleared, and listed for that org only while set.
func testOrgMasterKey(t *testing.T, s edge.Store) {
	ctx := t.Context()
	const arnA = "awskms:arn:aws:kms:eu-west-2:111122223333:key/aaaaaaaa-0000-0000-0000-000000000001"
	const arnB = "awskms:arn:aws:kms:eu-west-2:111122223333:key/aaaaaaaa-0000-0000-0000-000000000002"
	a := edge.Org{ID: randomID("org_"), Name: randomID("name-"), CreatedAt: now(), MasterKey: arnA}
	if err := s.CreateOrg(ctx, a); err != nil {
		t.Fatalf("CreateOrg: %v", err)
	}
	b := newOrg(t, s)
	check := func(wantA, wantB string) {
		t.Helper()
		for _, c := range []struct{ id, want string }{{a.ID, wantA}, {b.ID, wantB}} {
			o, err := s.Org(ctx, c.id)
			if err != nil {
				t.Fatalf("Org: %v", err)
			}
			if o.MasterKey != c.want {
				t.Errorf("Org(%s).MasterKey = %q, want %q", c.id, o.MasterKey, c.want)
			}
		}
		m, err := s.OrgMasterKeys(ctx)
		if err != nil {
			t.Fatalf("OrgMasterKeys: %v", err)
		}
		for _, c := range []struct{ id, want string }{{a.ID, wantA}, {b.ID, wantB}} {
			if got, ok := m[c.id]; got != c.want || ok != (c.want != "") {
				t.Errorf("OrgMasterKeys()[%s] = %q, %v; want %q", c.id, got, ok, c.want)
			}
		}
	}
	check(arnA, "")
	if err := s.SetOrgMasterKey(ctx, b.ID, arnB); err != nil {
		t.Fatalf("SetOrgMasterKey: %v", err)
	}
	check(arnA, arnB)
	if err := s.SetOrgMasterKey(ctx, a.ID, ""); err != nil {
		t.Fatalf("SetOrgMasterKey: %v", err)
	}
	check("", arnB)
	if err := s.SetOrgMasterKey(ctx, randomID("org_"), arnA); !errors.Is(err, edge.ErrNotFound) {
		t.Errorf("SetOrgMasterKey(unknown org) = %v, want ErrNotFound", err)
	}
}

// Retention deletes the org's oldest records before a time, at most limit
// per call, and no other org's.
func testDeleteRequestsBefore(t *testing.T, s edge.Store) {
	ctx := t.Context()
	a, b := newOrg(t, s), newOrg(t, s)
	ka, kb := newKey(t, s, a.ID), newKey(t, s, b.ID)
	base := now().Add(-100 * 24 * time.Hour)
	var recs []edge.RequestRecord
	for i := range 10 { // a: 10 records a day apart; b: the same times
		recs = append(recs, record(a.ID, ka.ID, base.Add(time.Duration(i)*24*time.Hour), i), record(b.ID, kb.ID, base.Add(time.Duration(i)*24*time.Hour), 100+i))
	}
	if err := s.InsertRequests(ctx, recs); err != nil {
		t.Fatal(err)
	}
	cut := base.Add(7 * 24 * time.Hour) // records 0..6 are older
	var deleted []int64
	for {
		n, err := s.DeleteRequestsBefore(ctx, a.ID, cut, 3)
		if err != nil {
			t.Fatal(err)
		}
		deleted = append(deleted, n)
		if n < 3 {
			break
		}
	}
	if !slices.Equal(deleted, []int64{3, 3, 1}) {
		t.Fatalf("deleted per call %v, want [3 3 1]", deleted)
	}
	left, err := s.Requests(ctx, a.ID, time.Time{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 3 || left[0].Time.Before(cut) {
		t.Fatalf("org a keeps %v", ids(left))
	}
	if other, err := s.Requests(ctx, b.ID, time.Time{}, 100); err != nil || len(other) != 10 {
		t.Fatalf("org b keeps %d records, %v; want all 10", len(other), err)
	}
	if _, err := s.DeleteRequestsBefore(ctx, a.ID, cut, 0); !errors.Is(err, edge.ErrInvalid) {
		t.Fatalf("limit 0: %v, want ErrInvalid", err)
	}
}
