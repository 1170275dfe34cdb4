//go:build localkms

// These tests run against a real local KMS (github.com/nsmithuk/local-kms)
// and are built only with -tags localkms, which scripts/local-kms.sh test
// sets after starting the server in a private network namespace. With the
// tag, CODEX_TEST_KMS_ENDPOINT must name a reachable server: the tests fail,
// never skip, when it does not.

package awskms_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/persiv/codex/edge/internal/testutil"
	"github.com/persiv/codex/edge/keyring"
	"github.com/persiv/codex/edge/keyring/awskms"
	"github.com/persiv/codex/edge/keyring/awskms/kmstest"
	"github.com/persiv/codex/edge/keyring/byok"
)

// countingAPI counts the calls that reach KMS.
type countingAPI struct {
	awskms.API
	n atomic.Int64
}

func (c *countingAPI) GenerateDataKey(ctx context.Context, in *kms.GenerateDataKeyInput, o ...func(*kms.Options)) (*kms.GenerateDataKeyOutput, error) {
	c.n.Add(1)
	return c.API.GenerateDataKey(ctx, in, o...)
}

func (c *countingAPI) Decrypt(ctx context.Context, in *kms.DecryptInput, o ...func(*kms.Options)) (*kms.DecryptOutput, error) {
	c.n.Add(1)
	return c.API.Decrypt(ctx, in, o...)
}

func ring(t *testing.T, s keyring.Store, m keyring.MasterKey) *keyring.Keyring {
	t.Helper()
	k, err := keyring.New(keyring.Options{Store: s, Master: m, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func sealT(t *testing.T, k *keyring.Keyring, org, rec, pt string) []byte {
	t.Helper()
	ct, err := k.Seal(context.Background(), org, keyring.PurposeCredential, rec, []byte(pt))
	if err != nil {
		t.Fatalf("seal: %v", err)
	}
	return ct
}

func openT(t *testing.T, k *keyring.Keyring, org, rec string, ct []byte) (string, error) {
	t.Helper()
	pt, err := k.Open(context.Background(), org, keyring.PurposeCredential, rec, ct)
	return string(pt), err
}

// Open honours AWS_ENDPOINT_URL_KMS and the credential chain; DEKs round
// trip and record the key ARN as their version.
func TestLocalKMSRoundTrip(t *testing.T) {
	admin := kmstest.Local(t)
	arn := kmstest.CreateKey(t, admin)
	m, err := awskms.Open(context.Background(), arn)
	if err != nil {
		t.Fatal(err)
	}
	store := keyring.NewMemStore()
	k := ring(t, store, m)
	a := sealT(t, k, "org_a", "openai", "sk-a")
	b := sealT(t, k, "org_b", "openai", "sk-b")
	// A cold instance unwraps through KMS.
	cold := ring(t, store, m)
	for _, c := range []struct {
		org, want string
		ct        []byte
	}{{"org_a", "sk-a", a}, {"org_b", "sk-b", b}} {
		if got, err := openT(t, cold, c.org, "openai", c.ct); err != nil || got != c.want {
			t.Fatalf("open %s = %q, %v", c.org, got, err)
		}
	}
	st, err := k.Status(context.Background(), "")
	if err != nil || len(st) != 2 {
		t.Fatalf("status = %+v, %v", st, err)
	}
	for _, s := range st {
		if s.MasterRef != awskms.Ref || s.MasterVersion != arn {
			t.Errorf("status %+v: want ref awskms, version %s", s, arn)
		}
	}
}

// The encryption context binds a wrapped DEK to its org.
func TestLocalKMSContextBinding(t *testing.T) {
	admin := kmstest.Local(t)
	m, err := awskms.New(admin, kmstest.CreateKey(t, admin))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	id, _ := keyring.NewDEKID()
	dek, w, err := m.Generate(ctx, keyring.Binding{OrgID: "org_a", DEKID: id})
	if err != nil || len(dek) != keyring.DEKSize {
		t.Fatalf("generate: %v", err)
	}
	if _, err := m.Unwrap(ctx, keyring.Binding{OrgID: "org_b", DEKID: id}, w); !errors.Is(err, keyring.ErrUnreadable) {
		t.Fatalf("unwrap under another org: %v, want ErrUnreadable", err)
	}
	got, err := m.Unwrap(ctx, keyring.Binding{OrgID: "org_a", DEKID: id}, w)
	if err != nil || string(got) != string(dek) {
		t.Fatalf("unwrap: %v", err)
	}
}

// Disabling the KMS key makes the org's content unreadable (local KMS says
// AccessDeniedException where AWS says DisabledException); enabling it
// again restores it.
func TestLocalKMSDisabledKey(t *testing.T) {
	admin := kmstest.Local(t)
	ctx := context.Background()
	arn := kmstest.CreateKey(t, admin)
	m, err := awskms.New(admin, arn)
	if err != nil {
		t.Fatal(err)
	}
	other, err := byok.New(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	store := keyring.NewMemStore()
	// org_b brought its own key; it must not suffer from org_a's KMS key.
	orgMaster := func(org string) keyring.MasterKey {
		if org == "org_b" {
			return other
		}
		return nil
	}
	newRing := func() *keyring.Keyring {
		k, err := keyring.New(keyring.Options{Store: store, Master: m, OrgMaster: orgMaster, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	k := newRing()
	ct := sealT(t, k, "org_a", "openai", "sk-a")
	ctB := sealT(t, k, "org_b", "openai", "sk-b")

	if _, err := admin.DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(arn)}); err != nil {
		t.Fatal(err)
	}
	cold := newRing()
	if got, err := openT(t, cold, "org_a", "openai", ct); !errors.Is(err, keyring.ErrUnreadable) {
		t.Fatalf("open with the KMS key disabled = %q, %v; want ErrUnreadable", got, err)
	}
	if _, err := cold.Seal(ctx, "org_a", keyring.PurposeCache, "r", []byte("v")); !errors.Is(err, keyring.ErrUnreadable) {
		t.Fatalf("seal with the KMS key disabled: %v; want ErrUnreadable", err)
	}
	if got, err := openT(t, cold, "org_b", "openai", ctB); err != nil || got != "sk-b" {
		t.Fatalf("other org with its own key = %q, %v", got, err)
	}

	if _, err := admin.EnableKey(ctx, &kms.EnableKeyInput{KeyId: aws.String(arn)}); err != nil {
		t.Fatal(err)
	}
	if got, err := openT(t, newRing(), "org_a", "openai", ct); err != nil || got != "sk-a" {
		t.Fatalf("open after re-enabling = %q, %v", got, err)
	}
}

// Re-pointing the alias to a new key and running rewrap moves every DEK
// to the new key with ReEncrypt; the old key can then be disabled.
func TestLocalKMSRewrapToNewKey(t *testing.T) {
	admin := kmstest.Local(t)
	ctx := context.Background()
	alias := fmt.Sprintf("alias/codex-%d", time.Now().UnixNano())
	oldKey, newKey := kmstest.CreateKey(t, admin), kmstest.CreateKey(t, admin)
	if _, err := admin.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String(alias), TargetKeyId: aws.String(oldKey)}); err != nil {
		t.Fatal(err)
	}
	m, err := awskms.Open(ctx, alias)
	if err != nil {
		t.Fatal(err)
	}
	store := keyring.NewMemStore()
	k := ring(t, store, m)
	var cts [][]byte
	for _, org := range []string{"org_a", "org_b"} {
		cts = append(cts, sealT(t, k, org, "r", org))
	}
	if _, err := k.Rotate(ctx, "org_a"); err != nil {
		t.Fatal(err)
	}
	cts = append(cts, sealT(t, k, "org_a", "r", "org_a"))

	if res, err := k.Rewrap(ctx, nil); err != nil || res.Current != 3 {
		t.Fatalf("rewrap before the alias moved = %+v, %v", res, err)
	}
	if _, err := admin.UpdateAlias(ctx, &kms.UpdateAliasInput{AliasName: aws.String(alias), TargetKeyId: aws.String(newKey)}); err != nil {
		t.Fatal(err)
	}
	m2, err := awskms.Open(ctx, alias) // a fresh process resolves the alias anew
	if err != nil {
		t.Fatal(err)
	}
	k2 := ring(t, store, m2)
	var events []keyring.RewrapEvent
	res, err := k2.Rewrap(ctx, func(e keyring.RewrapEvent) { events = append(events, e) })
	if err != nil || res.Rewrapped != 3 || len(events) != 3 {
		t.Fatalf("rewrap = %+v, %v", res, err)
	}
	for _, e := range events {
		if e.From.Version != oldKey || e.To.Version != newKey {
			t.Errorf("event %+v: want %s → %s", e, oldKey, newKey)
		}
	}
	if _, err := admin.DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(oldKey)}); err != nil {
		t.Fatal(err)
	}
	cold := ring(t, store, m2)
	for i, org := range []string{"org_a", "org_b", "org_a"} {
		if got, err := openT(t, cold, org, "r", cts[i]); err != nil || got != org {
			t.Fatalf("record %d after rewrap and disabling the old key = %q, %v", i, got, err)
		}
	}
}

// Once warm, the request path makes no KMS call: counted at the client.
func TestLocalKMSSteadyStateNoCalls(t *testing.T) {
	admin := kmstest.Local(t)
	api := &countingAPI{API: admin}
	m, err := awskms.New(api, kmstest.CreateKey(t, admin))
	if err != nil {
		t.Fatal(err)
	}
	k := ring(t, keyring.NewMemStore(), m)
	orgs := []string{"org_a", "org_b", "org_c", "org_d"}
	for _, org := range orgs {
		sealT(t, k, org, "warm", "w")
	}
	if got := api.n.Load(); got != int64(len(orgs)) {
		t.Fatalf("warm-up made %d KMS calls, want %d (one GenerateDataKey per org)", got, len(orgs))
	}
	for i := range 2000 {
		org := orgs[i%len(orgs)]
		ct := sealT(t, k, org, fmt.Sprint(i), "v")
		if got, err := openT(t, k, org, fmt.Sprint(i), ct); err != nil || got != "v" {
			t.Fatalf("open: %q, %v", got, err)
		}
	}
	if got := api.n.Load(); got != int64(len(orgs)) {
		t.Fatalf("%d KMS calls in steady state, want 0", got-int64(len(orgs)))
	}
}

// With Watch running, disabling the KMS key out of band makes a warm org
// unreadable within the 10 s promise (DESIGN §8), although its data key is
// cached for KeyLifetime; enabling the key restores it. The request path
// makes no unwrap while the probe runs.
func TestLocalKMSProbeDisabledKey(t *testing.T) {
	admin := kmstest.Local(t)
	ctx := context.Background()
	arn := kmstest.CreateKey(t, admin)
	m, err := awskms.Open(ctx, arn)
	if err != nil {
		t.Fatal(err)
	}
	k, err := keyring.New(keyring.Options{
		Store: keyring.NewMemStore(), Master: m, Logger: slog.New(slog.DiscardHandler),
		ProbeInterval: 100 * time.Millisecond, Revalidate: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ct := sealT(t, k, "org_a", "openai", "sk-a")
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); k.Watch(wctx) }()
	t.Cleanup(func() { cancel(); <-done })

	testutil.Eventually(t, 10*time.Second, "3 probes", func() bool {
		if got, err := openT(t, k, "org_a", "openai", ct); err != nil || got != "sk-a" {
			t.Fatalf("open before disabling = %q, %v", got, err)
		}
		return k.Stats().Probes >= 3
	})
	if st := k.Stats(); st.Unwraps != 0 || st.ProbeRefusals != 0 || st.ProbeErrors != 0 {
		t.Fatalf("stats while the key is enabled = %+v: want no unwrap, no refusal, no probe error", st)
	}

	if _, err := admin.DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(arn)}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "unreadable after DisableKey", func() bool {
		_, err := openT(t, k, "org_a", "openai", ct)
		if err != nil && !errors.Is(err, keyring.ErrUnreadable) {
			t.Fatalf("open after disabling: %v, want ErrUnreadable", err)
		}
		return err != nil
	})
	if st := k.Stats(); st.ProbeRefusals == 0 || st.ProbePurged == 0 {
		t.Errorf("stats = %+v: want the probe's refusal and purge counted", st)
	}
	if _, err := k.Seal(ctx, "org_a", keyring.PurposeCache, "r", []byte("v")); !errors.Is(err, keyring.ErrUnreadable) {
		t.Fatalf("seal after disabling: %v, want ErrUnreadable", err)
	}

	if _, err := admin.EnableKey(ctx, &kms.EnableKeyInput{KeyId: aws.String(arn)}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "readable after EnableKey", func() bool {
		got, err := openT(t, k, "org_a", "openai", ct)
		return err == nil && got == "sk-a"
	})
	sealT(t, k, "org_a", "openai", "sk-a2")
}

// Probe's answer for each key state local KMS can put a key in, through
// a key ARN and through an alias.
func TestLocalKMSProbeStates(t *testing.T) {
	admin := kmstest.Local(t)
	ctx := context.Background()
	arn := kmstest.CreateKey(t, admin)
	alias := fmt.Sprintf("alias/codex-probe-%d", time.Now().UnixNano())
	if _, err := admin.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String(alias), TargetKeyId: aws.String(arn)}); err != nil {
		t.Fatal(err)
	}
	byARN, err := awskms.New(admin, arn)
	if err != nil {
		t.Fatal(err)
	}
	byAlias, err := awskms.New(admin, alias)
	if err != nil {
		t.Fatal(err)
	}
	check := func(state string, revoked bool) {
		t.Helper()
		for _, m := range []*awskms.MasterKey{byARN, byAlias} {
			err := m.Probe(ctx)
			if revoked != errors.Is(err, keyring.ErrUnreadable) || (!revoked && err != nil) {
				t.Errorf("%s, probe by %s = %v; want revoked %v", state, m.KeyID(), err, revoked)
			}
		}
	}
	check("enabled", false)
	if _, err := admin.DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(arn)}); err != nil {
		t.Fatal(err)
	}
	check("disabled", true)
	if _, err := admin.EnableKey(ctx, &kms.EnableKeyInput{KeyId: aws.String(arn)}); err != nil {
		t.Fatal(err)
	}
	check("enabled again", false)
	if _, err := admin.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: aws.String(arn), PendingWindowInDays: aws.Int32(7)}); err != nil {
		t.Fatal(err)
	}
	check("pending deletion", true)
	if _, err := admin.CancelKeyDeletion(ctx, &kms.CancelKeyDeletionInput{KeyId: aws.String(arn)}); err != nil {
		t.Fatal(err)
	}
	// AWS leaves a key whose deletion was cancelled disabled.
	if _, err := admin.EnableKey(ctx, &kms.EnableKeyInput{KeyId: aws.String(arn)}); err != nil {
		t.Fatal(err)
	}
	check("deletion cancelled", false)
	fresh, err := awskms.New(admin, "arn:aws:kms:eu-west-2:111122223333:key/00000000-0000-0000-0000-000000000000")
	if err != nil {
		t.Fatal(err)
	}
	if err := fresh.Probe(ctx); !errors.Is(err, keyring.ErrUnreadable) {
		t.Errorf("probe of a key that does not exist = %v, want ErrUnreadable", err)
	}
}
