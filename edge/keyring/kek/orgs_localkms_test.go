//go:build localkms

// Per-org master keys against a real local KMS (scripts/local-kms.sh test
// builds these with -tags localkms; CODEX_TEST_KMS_ENDPOINT must name a
// reachable server: the tests fail, never skip, when it does not).

package kek_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/persiv/codex/edge/internal/testutil"
	"github.com/persiv/codex/edge/keyring"
	"github.com/persiv/codex/edge/keyring/awskms"
	"github.com/persiv/codex/edge/keyring/awskms/kmstest"
	"github.com/persiv/codex/edge/keyring/byok"
	"github.com/persiv/codex/edge/keyring/kek"
)

// edgeDefault is the edge's own master key (CODEX_KEK=byok here): what the
// operator holds.
func edgeDefault(t *testing.T) keyring.MasterKey {
	t.Helper()
	m, err := byok.New(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// orgStore is an in-memory list of the orgs' own master key references,
// standing in for the edge store's OrgMasterKeys.
type orgStore map[string]string

func (s orgStore) list(context.Context) (map[string]string, error) {
	m := make(map[string]string, len(s))
	for k, v := range s {
		m[k] = v
	}
	return m, nil
}

func newRing(t *testing.T, st keyring.Store, master keyring.MasterKey, orgs orgStore) *keyring.Keyring {
	t.Helper()
	ok := kek.NewOrgKeys(orgs.list, nil)
	if _, err := ok.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	k, err := keyring.New(keyring.Options{Store: st, Master: master, OrgMaster: ok.Master, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func seal(t *testing.T, k *keyring.Keyring, org, pt string) []byte {
	t.Helper()
	ct, err := k.Seal(context.Background(), org, keyring.PurposeCredential, "openai", []byte(pt))
	if err != nil {
		t.Fatalf("seal for %s: %v", org, err)
	}
	return ct
}

func open(k *keyring.Keyring, org string, ct []byte) (string, error) {
	pt, err := k.Open(context.Background(), org, keyring.PurposeCredential, "openai", ct)
	return string(pt), err
}

// backup copies every data key row of the orgs into a new store: a
// database backup as far as the keyring is concerned.
func backup(t *testing.T, st keyring.Store, orgs ...string) *keyring.MemStore {
	t.Helper()
	b := keyring.NewMemStore()
	for _, org := range orgs {
		list, err := st.DEKs(context.Background(), org)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range list {
			if err := b.CreateDEK(context.Background(), d); err != nil {
				t.Fatal(err)
			}
		}
	}
	return b
}

// Two orgs on two customer keys, a third on the edge's default key: each
// org's data keys are wrapped by its own KMS key under its own encryption
// context, so neither the other org's key nor the operator's default key
// opens them.
func TestOrgMasterKeysCrossOrg(t *testing.T) {
	admin := kmstest.Local(t)
	arnA, arnB := kmstest.CreateKey(t, admin), kmstest.CreateKey(t, admin)
	orgs := orgStore{"org_a": "awskms:" + arnA, "org_b": "awskms:" + arnB}
	st := keyring.NewMemStore()
	def := edgeDefault(t)
	k := newRing(t, st, def, orgs)
	ctA, ctB, ctC := seal(t, k, "org_a", "sk-a"), seal(t, k, "org_b", "sk-b"), seal(t, k, "org_c", "sk-c")

	ctx := context.Background()
	wrapped := func(org string) keyring.WrappedDEK {
		list, err := st.DEKs(ctx, org)
		if err != nil || len(list) != 1 {
			t.Fatalf("DEKs(%s) = %d, %v", org, len(list), err)
		}
		return list[0]
	}
	a, b, c := wrapped("org_a"), wrapped("org_b"), wrapped("org_c")
	if a.MasterRef != "awskms" || a.MasterVersion != arnA || b.MasterVersion != arnB {
		t.Fatalf("org keys wrapped by %s:%s and %s:%s, want their own KMS keys", a.MasterRef, a.MasterVersion, b.MasterRef, b.MasterVersion)
	}
	if c.MasterRef != def.Ref() {
		t.Fatalf("org_c (no own key) wrapped by %s, want the default %s", c.MasterRef, def.Ref())
	}

	mA, err := kek.OpenOrg(ctx, "awskms:"+arnA)
	if err != nil {
		t.Fatal(err)
	}
	mB, err := kek.OpenOrg(ctx, "awskms:"+arnB)
	if err != nil {
		t.Fatal(err)
	}
	// What separates the orgs is the encryption context (org_id) and the
	// key recorded with the data key: a master key object names the KMS
	// key of the wrap it is given, so the edge's credentials decide which
	// keys it can reach at all (the customer's key policy, README).
	bindA := keyring.Binding{OrgID: "org_a", DEKID: a.ID}
	wA := keyring.Wrap{Ref: a.MasterRef, Version: a.MasterVersion, Blob: a.Wrapped}
	for _, c := range []struct {
		name string
		m    keyring.MasterKey
		b    keyring.Binding
		w    keyring.Wrap
	}{
		{"A's data key presented as org B's", mA, keyring.Binding{OrgID: "org_b", DEKID: a.ID}, wA},
		{"A's data key under the edge's default key", def, bindA, wA},
		{"A's blob named as wrapped by B's key", mB, bindA, keyring.Wrap{Ref: "awskms", Version: arnB, Blob: a.Wrapped}},
	} {
		if dek, err := c.m.Unwrap(ctx, c.b, c.w); err == nil {
			clear(dek)
			t.Errorf("%s: unwrapped, want refused", c.name)
		}
	}

	// Moving B's ciphertext onto A's org does not open it either.
	if _, err := open(k, "org_a", ctB); !errors.Is(err, keyring.ErrUnreadable) {
		t.Errorf("org B's ciphertext opened as org A's: err = %v, want ErrUnreadable", err)
	}
	for _, c := range []struct {
		org, want string
		ct        []byte
	}{{"org_a", "sk-a", ctA}, {"org_b", "sk-b", ctB}, {"org_c", "sk-c", ctC}} {
		cold := newRing(t, st, def, orgs)
		if got, err := open(cold, c.org, c.ct); err != nil || got != c.want {
			t.Errorf("cold open for %s = %q, %v", c.org, got, err)
		}
	}
}

// A backup of the data keys taken before `crypto shred` still opens the
// org's content with the keys that wrapped them. With the org's own KMS key
// disabled (or deleted) after the shred, it does not; under the shared
// default key it does, which is what `crypto status` reports as shared.
func TestOrgMasterKeyShredSurvivesBackup(t *testing.T) {
	admin := kmstest.Local(t)
	arnA := kmstest.CreateKey(t, admin)
	orgs := orgStore{"org_a": "awskms:" + arnA}
	st := keyring.NewMemStore()
	def := edgeDefault(t)
	k := newRing(t, st, def, orgs)
	ctA, ctC := seal(t, k, "org_a", "sk-a"), seal(t, k, "org_c", "sk-c")
	old := backup(t, st, "org_a", "org_c")

	ctx := context.Background()
	for _, org := range []string{"org_a", "org_c"} {
		if _, err := k.Shred(ctx, org); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := open(newRing(t, st, def, orgs), "org_a", ctA); !errors.Is(err, keyring.ErrUnreadable) {
		t.Fatalf("after shred, org A opens from the live store: %v", err)
	}
	if _, err := admin.DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(arnA)}); err != nil {
		t.Fatal(err)
	}
	restored := newRing(t, old, def, orgs)
	if _, err := open(restored, "org_a", ctA); !errors.Is(err, keyring.ErrUnreadable) {
		t.Errorf("pre-shred backup opened org A's credential after its own KMS key was disabled: err = %v, want ErrUnreadable", err)
	}
	// Said plainly: the shared default key still opens the backup's copy
	// of an org that had no key of its own.
	if got, err := open(restored, "org_c", ctC); err != nil || got != "sk-c" {
		t.Errorf("pre-shred backup of an org on the shared key = %q, %v; want it to open (shred cannot reach backups under a shared key)", got, err)
	}
	// What crypto shred --schedule-key-deletion 7 calls.
	mA, err := kek.OpenOrg(ctx, "awskms:"+arnA)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mA.(*awskms.MasterKey).ScheduleDeletion(ctx, 6); err == nil {
		t.Error("ScheduleDeletion(6 days) accepted; AWS KMS's minimum is 7")
	}
	at, err := mA.(*awskms.MasterKey).ScheduleDeletion(ctx, 7)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(at); d < 6*24*time.Hour || d > 8*24*time.Hour {
		t.Errorf("deletion scheduled for %v, want in 7 days", at)
	}
	if _, err := open(newRing(t, old, def, orgs), "org_a", ctA); !errors.Is(err, keyring.ErrUnreadable) {
		t.Errorf("pre-shred backup opened org A's credential with its key pending deletion: err = %v", err)
	}
}

// `orgs kek set`: an org's data keys move from the default key to its own
// KMS key, to another one, and back, content opening throughout; once
// moved, the earlier key is no longer needed; a second run changes nothing.
func TestOrgMasterKeyRewrap(t *testing.T) {
	admin := kmstest.Local(t)
	arnA, arnB := kmstest.CreateKey(t, admin), kmstest.CreateKey(t, admin)
	ctx := context.Background()
	st := keyring.NewMemStore()
	def := edgeDefault(t)
	orgs := orgStore{}
	ct := seal(t, newRing(t, st, def, orgs), "org_a", "sk-a")
	if _, err := newRing(t, st, def, orgs).Rotate(ctx, "org_a"); err != nil {
		t.Fatal(err)
	}
	from := func(ref, version string) keyring.MasterKey {
		if ref != "awskms" {
			return nil
		}
		m, err := kek.OpenOrg(ctx, "awskms:"+version)
		if err != nil {
			t.Errorf("open %s: %v", version, err)
			return nil
		}
		return m
	}
	move := func(ref string, wantRewrapped int) {
		t.Helper()
		if ref == "" {
			delete(orgs, "org_a")
		} else {
			orgs["org_a"] = ref
		}
		var events int
		res, err := newRing(t, st, def, orgs).RewrapOrg(ctx, "org_a", from, func(keyring.RewrapEvent) { events++ })
		if err != nil || res.Total != 2 || res.Rewrapped != wantRewrapped || events != 2 {
			t.Fatalf("move to %q: %+v, %d events, %v; want 2 keys, %d rewrapped", ref, res, events, err, wantRewrapped)
		}
		if got, err := open(newRing(t, st, def, orgs), "org_a", ct); err != nil || got != "sk-a" {
			t.Fatalf("after move to %q: open = %q, %v", ref, got, err)
		}
	}
	// Interrupted after the first data key (the command killed, the
	// connection lost): the key moved stays moved, the other stays where
	// it was, both open, and running again moves only what is left.
	orgs["org_a"] = "awskms:" + arnA
	cctx, cancel := context.WithCancel(ctx)
	res, err := newRing(t, st, def, orgs).RewrapOrg(cctx, "org_a", from, func(keyring.RewrapEvent) { cancel() })
	cancel()
	if err == nil || res.Rewrapped != 1 {
		t.Fatalf("interrupted move: %+v, %v; want 1 rewrapped and an error", res, err)
	}
	if got, err := open(newRing(t, st, def, orgs), "org_a", ct); err != nil || got != "sk-a" {
		t.Fatalf("after the interrupted move: open = %q, %v", got, err)
	}
	move("awskms:"+arnA, 1) // resumed: only the key left behind moves
	move("awskms:"+arnA, 0) // repeated: nothing left to do
	move("awskms:"+arnB, 2)
	if _, err := admin.DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(arnA)}); err != nil {
		t.Fatal(err)
	}
	if got, err := open(newRing(t, st, def, orgs), "org_a", ct); err != nil || got != "sk-a" {
		t.Fatalf("on B's key with A's disabled: open = %q, %v", got, err)
	}
	move("", 2) // back to the default key, opening with B's key as recorded
	if _, err := admin.DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(arnB)}); err != nil {
		t.Fatal(err)
	}
	if got, err := open(newRing(t, st, def, orgs), "org_a", ct); err != nil || got != "sk-a" {
		t.Fatalf("back on the default key with both KMS keys disabled: open = %q, %v", got, err)
	}
}

// Disabling org A's own KMS key while serving makes A's content unreadable
// within 10 s (Watch probes each distinct org key in use and drops what it
// unwrapped), org B on another key and org C on the default key carry on
// without a KMS call, and re-enabling brings A back. An org key with
// nothing cached is not probed at all.
func TestOrgMasterKeyRevokedWhileServing(t *testing.T) {
	admin := kmstest.Local(t)
	arnA, arnB, arnIdle := kmstest.CreateKey(t, admin), kmstest.CreateKey(t, admin), kmstest.CreateKey(t, admin)
	orgs := orgStore{"org_a": "awskms:" + arnA, "org_b": "awskms:" + arnB, "org_a2": "awskms:" + arnA, "org_idle": "awskms:" + arnIdle}
	st := keyring.NewMemStore()
	ok := kek.NewOrgKeys(orgs.list, nil)
	ctx := context.Background()
	if _, err := ok.Load(ctx); err != nil {
		t.Fatal(err)
	}
	k, err := keyring.New(keyring.Options{Store: st, Master: edgeDefault(t), OrgMaster: ok.Master, OrgMasters: ok.Masters,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctA, ctA2, ctB, ctC := seal(t, k, "org_a", "sk-a"), seal(t, k, "org_a2", "sk-a2"), seal(t, k, "org_b", "sk-b"), seal(t, k, "org_c", "sk-c")
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); k.Watch(wctx) }()
	t.Cleanup(func() { cancel(); <-done })

	testutil.Eventually(t, 10*time.Second, "first probes", func() bool { return k.Stats().Probes >= 2 })
	if _, err := admin.DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(arnA)}); err != nil {
		t.Fatal(err)
	}
	took := testutil.Eventually(t, 10*time.Second, "org A unreadable after DisableKey", func() bool {
		_, errA := open(k, "org_a", ctA)
		_, errA2 := open(k, "org_a2", ctA2)
		return errors.Is(errA, keyring.ErrUnreadable) && errors.Is(errA2, keyring.ErrUnreadable)
	})
	t.Logf("org A unreadable %v after its key was disabled", took)
	for _, c := range []struct {
		org, want string
		ct        []byte
	}{{"org_b", "sk-b", ctB}, {"org_c", "sk-c", ctC}} {
		if got, err := open(k, c.org, c.ct); err != nil || got != c.want {
			t.Errorf("%s while A's key is disabled: %q, %v", c.org, got, err)
		}
	}
	if _, err := admin.EnableKey(ctx, &kms.EnableKeyInput{KeyId: aws.String(arnA)}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "org A readable after EnableKey", func() bool {
		k.Invalidate("org_a") // forget the brief memory of the refusal, as a change would
		got, err := open(k, "org_a", ctA)
		return err == nil && got == "sk-a"
	})
	st0 := k.Stats()
	if st0.ProbesSkipped == 0 {
		t.Errorf("the idle org key was probed: stats %+v", st0)
	}
}
