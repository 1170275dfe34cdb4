package keywrap_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/persiv/codex/edge/keyring"
	"github.com/persiv/codex/edge/keyring/internal/keywrap"
)

func key(b byte) []byte { return bytes.Repeat([]byte{b}, keywrap.KeySize) }

func TestWrapUnwrap(t *testing.T) {
	ctx := context.Background()
	r, err := keywrap.New("byok", key(1))
	if err != nil {
		t.Fatal(err)
	}
	b := keyring.Binding{OrgID: "org_a", DEKID: keyring.DEKID{1}}
	dek, w, err := r.Generate(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if len(dek) != keyring.DEKSize || w.Ref != "byok" || w.Version != keywrap.Fingerprint(key(1)) || bytes.Contains(w.Blob, dek) {
		t.Fatalf("generate: %d-byte dek, wrap %+v", len(dek), w)
	}
	got, err := r.Unwrap(ctx, b, w)
	if err != nil || !bytes.Equal(got, dek) {
		t.Fatalf("unwrap = %x, %v", got, err)
	}
	if cur, _ := r.Current(ctx, w); !cur {
		t.Error("fresh wrap is not current")
	}

	bad := []struct {
		name string
		b    keyring.Binding
		w    keyring.Wrap
	}{
		{"other org", keyring.Binding{OrgID: "org_b", DEKID: b.DEKID}, w},
		{"other dek id", keyring.Binding{OrgID: "org_a", DEKID: keyring.DEKID{2}}, w},
		{"other ref", b, keyring.Wrap{Ref: "local", Version: w.Version, Blob: w.Blob}},
		{"unknown version", b, keyring.Wrap{Ref: w.Ref, Version: "0000000000000000", Blob: w.Blob}},
		{"short blob", b, keyring.Wrap{Ref: w.Ref, Version: w.Version, Blob: w.Blob[:20]}},
	}
	for i := range w.Blob {
		blob := bytes.Clone(w.Blob)
		blob[i] ^= 0x80
		bad = append(bad, struct {
			name string
			b    keyring.Binding
			w    keyring.Wrap
		}{"flipped byte", b, keyring.Wrap{Ref: w.Ref, Version: w.Version, Blob: blob}})
	}
	for _, tt := range bad {
		if _, err := r.Unwrap(ctx, tt.b, tt.w); !errors.Is(err, keyring.ErrUnreadable) {
			t.Errorf("%s: err = %v, want ErrUnreadable", tt.name, err)
		}
	}
}

func TestVersions(t *testing.T) {
	ctx := context.Background()
	b := keyring.Binding{OrgID: "org_a", DEKID: keyring.DEKID{1}}
	old, _ := keywrap.New("byok", key(1))
	dek, w, err := old.Generate(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	both, err := keywrap.New("byok", key(2), key(1))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := both.Unwrap(ctx, b, w); err != nil || !bytes.Equal(got, dek) {
		t.Fatalf("previous version does not unwrap: %v", err)
	}
	if cur, _ := both.Current(ctx, w); cur {
		t.Error("wrap under the previous version reported current")
	}
	nw, err := both.Wrap(ctx, b, dek)
	if err != nil || nw.Version != keywrap.Fingerprint(key(2)) {
		t.Fatalf("wrap = %+v, %v", nw, err)
	}
	if v := both.Versions(); len(v) != 2 || v[0] != nw.Version || v[1] != w.Version {
		t.Errorf("versions = %v", v)
	}
	if _, err := keywrap.New("byok", key(1), key(1)); err == nil {
		t.Error("duplicate key accepted")
	}
	if _, err := keywrap.New("byok", key(1)[:31]); err == nil {
		t.Error("31-byte key accepted")
	}
	if _, err := keywrap.New("byok"); err == nil {
		t.Error("no key accepted")
	}
}

func TestFingerprintStable(t *testing.T) {
	// Stored DEKs record this value: it must never change.
	if got, want := keywrap.Fingerprint(key(0)), keywrap.Fingerprint(make([]byte, 32)); got != want || len(got) != 16 {
		t.Fatalf("fingerprint = %q", got)
	}
	if got := keywrap.Fingerprint(key(0)); got != "4d3b3509aabf80a8" {
		t.Errorf("fingerprint of the zero key = %s; changing it orphans every stored DEK", got)
	}
}
