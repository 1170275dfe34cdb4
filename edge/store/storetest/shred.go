package storetest

import (
	"bytes"
	"testing"

	"github.com/persiv/codex/edge"
)

// PlantSealed stores, for the org, one value of every kind ShredSealed
// removes — a sealed provider credential, a fingerprint secret, an org
// memory and a key's memory — each a fresh random value, beside a provider
// whose credential comes from the environment (which a shred keeps). It
// returns the sealed values, for scans of the store's files.
func PlantSealed(t *testing.T, s edge.Store, orgID string) [][]byte {
	t.Helper()
	ctx := t.Context()
	cred, secret, own, perKey := randomSecret(), randomSecret(), randomSecret(), randomSecret()
	if err := s.SetProvider(ctx, edge.ProviderConfig{OrgID: orgID, Provider: edge.OpenAI, SealedKey: cred}); err != nil {
		t.Fatalf("SetProvider: %v", err)
	}
	if err := s.SetProvider(ctx, edge.ProviderConfig{OrgID: orgID, Provider: edge.Anthropic, APIKeyEnv: "ANTHROPIC_API_KEY"}); err != nil {
		t.Fatalf("SetProvider: %v", err)
	}
	if _, err := s.SwapFingerprintSecret(ctx, orgID, nil, secret); err != nil {
		t.Fatalf("SwapFingerprintSecret: %v", err)
	}
	k := newKey(t, s, orgID)
	for _, m := range []edge.Memory{
		{OrgID: orgID, Name: "style", Version: 1, Sealed: own, Bytes: 5, Tokens: 1, UpdatedAt: now()},
		{OrgID: orgID, KeyID: k.ID, Name: "team", Version: 1, Sealed: perKey, Bytes: 5, Tokens: 1, UpdatedAt: now()},
	} {
		if err := s.PutMemory(ctx, m); err != nil {
			t.Fatalf("PutMemory: %v", err)
		}
	}
	return [][]byte{cred, secret, own, perKey}
}

// testShredSealed: ShredSealed removes the org's sealed credential,
// fingerprint secret and memories' text, keeps the settings and versions
// around them, records a change, and leaves another org whole.
func testShredSealed(t *testing.T, s edge.Store) {
	ctx := t.Context()
	a, b := newOrg(t, s), newOrg(t, s)
	PlantSealed(t, s, a.ID)
	bSealed := PlantSealed(t, s, b.ID)
	seq := lastSeq(t, s)

	got, err := s.ShredSealed(ctx, a.ID, now())
	if err != nil || got != (edge.Shredded{Credentials: 1, FingerprintSecret: true, Memories: 2}) {
		t.Fatalf("ShredSealed = %+v, %v", got, err)
	}
	pcs, err := s.Providers(ctx, a.ID)
	if err != nil || len(pcs) != 2 {
		t.Fatalf("Providers after the shred = %+v, %v; want both settings kept", pcs, err)
	}
	for _, pc := range pcs {
		switch pc.Provider {
		case edge.OpenAI:
			if pc.SealedKey != nil || pc.APIKeyEnv != "" {
				t.Errorf("sealed credential after the shred: %+v; want none", pc)
			}
		case edge.Anthropic:
			if pc.APIKeyEnv != "ANTHROPIC_API_KEY" {
				t.Errorf("environment credential after the shred: %+v; want kept", pc)
			}
		}
	}
	if fs, err := s.FingerprintSecret(ctx, a.ID); err != nil || fs != nil {
		t.Errorf("fingerprint secret after the shred = %x, %v; want nil", fs, err)
	}
	if ms, err := s.Memories(ctx, a.ID); err != nil || len(ms) != 0 {
		t.Errorf("memories after the shred = %+v, %v; want none set", ms, err)
	}
	if m, err := s.Memory(ctx, a.ID, "", "style"); err != nil || m.Sealed != nil || m.Version != 1 {
		t.Errorf("memory after the shred = %+v, %v; want version 1 without text", m, err)
	}
	if n, err := s.ShredSealed(ctx, a.ID, now()); err != nil || n != (edge.Shredded{}) {
		t.Errorf("second ShredSealed = %+v, %v; want nothing left", n, err)
	}
	if err := s.PutMemory(ctx, edge.Memory{OrgID: a.ID, Name: "style", Version: 2, Sealed: []byte("x"), Bytes: 1, UpdatedAt: now()}); err != nil {
		t.Errorf("set after the shred: %v; want version 2", err)
	}
	changes := allChanges(t, s, seq)
	if len(changes) == 0 || changes[0].OrgID != a.ID || changes[0].Kind != "provider" {
		t.Errorf("changes after the shred = %+v; want a provider change of org a", changes)
	}
	wantErr(t, "ShredSealed of an unknown org", func() error { _, err := s.ShredSealed(ctx, randomID("org_"), now()); return err }(), edge.ErrNotFound)

	// Org b keeps everything.
	pcs, _ = s.Providers(ctx, b.ID)
	var cred []byte
	for _, pc := range pcs {
		if pc.Provider == edge.OpenAI {
			cred = pc.SealedKey
		}
	}
	fs, _ := s.FingerprintSecret(ctx, b.ID)
	ms, _ := s.Memories(ctx, b.ID)
	if !bytes.Equal(cred, bSealed[0]) || !bytes.Equal(fs, bSealed[1]) || len(ms) != 2 {
		t.Errorf("the other org after the shred: credential %x, secret %x, %d memories", cred, fs, len(ms))
	}
}
