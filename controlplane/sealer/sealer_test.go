package sealer_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/persiv/codex/controlplane/sealer"
)

func randomKey(t *testing.T) *sealer.LocalKey {
	t.Helper()
	key := make([]byte, sealer.KeySize)
	rand.Read(key)
	k, err := sealer.NewLocalKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var seedBinding = sealer.Binding{Purpose: "nats-seed", Name: "operator"}

func TestSealOpen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := sealer.New(randomKey(t))
	secret := []byte("SOAPLAINTEXTSEEDTHATMUSTNOTAPPEARINTHESEALEDRECORD")
	sealed, err := s.Seal(ctx, seedBinding, secret)
	if err != nil {
		t.Fatal(err)
	}
	if !sealer.IsSealed(sealed) || bytes.Contains(sealed, secret) || bytes.Contains(sealed, secret[:8]) {
		t.Fatal("sealed record holds the plaintext or lacks the magic")
	}
	again, _ := s.Seal(ctx, seedBinding, secret)
	if bytes.Equal(sealed, again) {
		t.Fatal("two seals of one plaintext are equal: nonce or data key reused")
	}
	got, err := s.Open(ctx, seedBinding, sealed)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("open = %q, %v", got, err)
	}

	for name, tc := range map[string]struct {
		s      *sealer.Sealer
		b      sealer.Binding
		sealed []byte
	}{
		"another record":  {s, sealer.Binding{Purpose: "nats-seed", Name: "system"}, sealed},
		"another purpose": {s, sealer.Binding{Purpose: "session-key", Name: "operator"}, sealed},
		"another key":     {sealer.New(randomKey(t)), seedBinding, sealed},
		"truncated":       {s, seedBinding, sealed[:len(sealed)-1]},
		"empty":           {s, seedBinding, nil},
		"plaintext":       {s, seedBinding, secret},
	} {
		if _, err := tc.s.Open(ctx, tc.b, tc.sealed); !errors.Is(err, sealer.ErrUnreadable) {
			t.Errorf("%s: %v, want ErrUnreadable", name, err)
		}
	}
	// Any flipped bit, header included, is refused.
	for i := range sealed {
		bad := bytes.Clone(sealed)
		bad[i] ^= 0x01
		if _, err := s.Open(ctx, seedBinding, bad); err == nil {
			t.Fatalf("a record with byte %d flipped opened", i)
		}
	}
}

func TestParseKey(t *testing.T) {
	t.Parallel()
	hexKey := strings.Repeat("ab", 32)
	for in, ok := range map[string]bool{
		hexKey:                        true,
		" " + hexKey + "\n":           true,
		strings.Repeat("A", 43) + "=": true, // base64 of 32 bytes
		strings.Repeat("ab", 31):      false,
		"not a key":                   false,
		"":                            false,
	} {
		k, err := sealer.ParseKey(in)
		if (err == nil) != ok || (ok && len(k) != sealer.KeySize) {
			t.Errorf("ParseKey(%q) = %d bytes, %v", in, len(k), err)
		}
		if err != nil && strings.Contains(err.Error(), strings.TrimSpace(in)) && in != "" {
			t.Errorf("error echoes the input: %v", err)
		}
	}
}

func TestKeyFile(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sub", "secrets.key")
	if _, err := sealer.LoadKeyFile(path); err == nil {
		t.Fatal("LoadKeyFile made a missing key file up")
	}
	a, err := sealer.LoadOrCreateKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi.Mode(), err)
	}
	sealed, err := sealer.New(a).Seal(ctx, seedBinding, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := sealer.LoadOrCreateKeyFile(path) // a restart
	if err != nil {
		t.Fatal(err)
	}
	if got, err := sealer.New(b).Open(ctx, seedBinding, sealed); err != nil || string(got) != "x" {
		t.Fatalf("after reloading the key file: %q %v", got, err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := sealer.LoadOrCreateKeyFile(path); err == nil {
		t.Fatal("a key file others can read was accepted")
	}
	bad := filepath.Join(t.TempDir(), "bad.key")
	if err := os.WriteFile(bad, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := sealer.LoadKeyFile(bad); err == nil {
		t.Fatal("a malformed key file was accepted")
	}
}
