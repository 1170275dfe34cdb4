package natsauth_test

import (
	"context"
	"crypto/rand"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/nats-io/jwt/v2"

	"github.com/persiv/codex/controlplane/natsauth"
	"github.com/persiv/codex/controlplane/sealer"
)

// seedRE matches an operator, account or user seed in the clear.
var seedRE = regexp.MustCompile(`S[OAU][A-Z2-7]{56}`)

func newSealer(t *testing.T) *sealer.Sealer {
	t.Helper()
	key := make([]byte, sealer.KeySize)
	rand.Read(key)
	kp, err := sealer.NewLocalKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return sealer.New(kp)
}

func open(t *testing.T, dir string, s *sealer.Sealer) *natsauth.Authority {
	t.Helper()
	a, err := natsauth.Open(context.Background(), dir, natsauth.Options{Sealer: s})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// identity is what must survive a migration: the operator and accounts,
// and the orgs' signing keys.
func identity(t *testing.T, a *natsauth.Authority) string {
	t.Helper()
	op, err := jwt.DecodeOperatorClaims(a.OperatorJWT())
	if err != nil {
		t.Fatal(err)
	}
	return op.Subject + " " + a.SystemAccount() + " " + a.IngestAccount() + " " + a.IngestJWT() + " " + strings.Join(a.Orgs(), ",")
}

// scan fails the test for any file under dir holding a seed in the clear
// or a file named like a plaintext seed.
func scan(t *testing.T, dir string) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		n++
		b, _ := os.ReadFile(path)
		if seedRE.Match(b) {
			t.Errorf("%s holds a NATS seed in the clear", path)
		}
		if strings.HasSuffix(path, ".nk") || strings.HasSuffix(path, ".nk.tmp") {
			t.Errorf("plaintext seed file %s left", path)
		}
		if strings.HasSuffix(path, ".sealed") {
			if fi, _ := d.Info(); fi.Mode().Perm() != 0o600 {
				t.Errorf("%s has mode %v", path, fi.Mode().Perm())
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no file scanned")
	}
}

func recordOf(dir, path string) string {
	rel, _ := filepath.Rel(dir, path)
	name := strings.TrimSuffix(rel, ".nk.sealed")
	if org, ok := strings.CutPrefix(name, "orgs"+string(filepath.Separator)); ok {
		return "org/" + org
	}
	return name
}

// unseal turns dir back into an earlier version's layout: plaintext .nk
// seed files, no sealed ones.
func unseal(t *testing.T, dir string, s *sealer.Sealer) {
	t.Helper()
	paths, _ := filepath.Glob(filepath.Join(dir, "*.nk.sealed"))
	orgs, _ := filepath.Glob(filepath.Join(dir, "orgs", "*.nk.sealed"))
	for _, p := range append(paths, orgs...) {
		sealed, _ := os.ReadFile(p)
		seed, err := s.Open(context.Background(), sealer.Binding{Purpose: natsauth.SeedPurpose, Name: recordOf(dir, p)}, sealed)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(strings.TrimSuffix(p, ".sealed"), seed, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	if len(paths) != 3 {
		t.Fatalf("%d account seed files", len(paths))
	}
}

func TestSeedsSealedAtRest(t *testing.T) {
	dir := t.TempDir()
	s := newSealer(t)
	a := open(t, dir, s)
	for _, org := range []string{"org_a", "org_b"} {
		if _, err := a.EnsureOrg(context.Background(), org); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"operator.nk.sealed", "system.nk.sealed", "ingest.nk.sealed", "orgs/org_a.nk.sealed", "orgs/org_b.nk.sealed"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil || !sealer.IsSealed(b) {
			t.Fatalf("%s: %v, sealed %v", f, err, sealer.IsSealed(b))
		}
	}
	scan(t, dir)
	if b := open(t, dir, s); identity(t, b) != identity(t, a) {
		t.Fatal("reopened authority differs")
	}
}

func TestPlaintextSeedsMigrated(t *testing.T) {
	dir := t.TempDir()
	s := newSealer(t)
	a := open(t, dir, s)
	if _, err := a.EnsureOrg(context.Background(), "org_a"); err != nil {
		t.Fatal(err)
	}
	want := identity(t, a)
	unseal(t, dir, s)
	// An earlier version's interrupted write left a plaintext temporary.
	seed, _ := os.ReadFile(filepath.Join(dir, "system.nk"))
	if err := os.WriteFile(filepath.Join(dir, "system.nk.tmp"), seed, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "orgs", "org_z.nk.tmp"), seed, 0o600); err != nil {
		t.Fatal(err)
	}

	b := open(t, dir, s)
	if identity(t, b) != want {
		t.Fatal("the migrated authority has other keys")
	}
	scan(t, dir)
	if _, err := os.Stat(filepath.Join(dir, "orgs", "org_z.nk.sealed")); err == nil {
		t.Fatal("a key was made from a temporary file")
	}
	// The org key was migrated at start-up, and still mints.
	if _, err := b.EnsureOrg(context.Background(), "org_a"); err != nil {
		t.Fatal(err)
	}
}

func TestInterruptedMigration(t *testing.T) {
	for _, tc := range []struct {
		name string
		// crash leaves dir as a migration interrupted at some point.
		crash   func(t *testing.T, dir string, sealedBefore map[string][]byte)
		wantErr bool
	}{
		{"before the sealed file was renamed into place", func(t *testing.T, dir string, sealed map[string][]byte) {
			for f, b := range sealed {
				if err := os.WriteFile(filepath.Join(dir, f+".tmp"), b[:len(b)/2], 0o600); err != nil { // torn
					t.Fatal(err)
				}
			}
		}, false},
		{"after the rename, before the plaintext was removed", func(t *testing.T, dir string, sealed map[string][]byte) {
			for f, b := range sealed {
				if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}, false},
		{"only some files migrated", func(t *testing.T, dir string, sealed map[string][]byte) {
			if err := os.WriteFile(filepath.Join(dir, "operator.nk.sealed"), sealed["operator.nk.sealed"], 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(filepath.Join(dir, "operator.nk")); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"a sealed file of another seed beside the plaintext", func(t *testing.T, dir string, sealed map[string][]byte) {
			if err := os.WriteFile(filepath.Join(dir, "system.nk.sealed"), sealed["system.nk.sealed"], 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "system.nk"), []byte("SAAGARBAGEBUTVALIDLOOKINGSEEDAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := newSealer(t)
			a := open(t, dir, s)
			if _, err := a.EnsureOrg(context.Background(), "org_a"); err != nil {
				t.Fatal(err)
			}
			want := identity(t, a)
			sealed := map[string][]byte{}
			for _, f := range []string{"operator.nk.sealed", "system.nk.sealed", "ingest.nk.sealed", filepath.Join("orgs", "org_a.nk.sealed")} {
				sealed[f], _ = os.ReadFile(filepath.Join(dir, f))
			}
			unseal(t, dir, s)
			tc.crash(t, dir, sealed)
			b, err := natsauth.Open(context.Background(), dir, natsauth.Options{Sealer: s})
			if tc.wantErr {
				if err == nil {
					t.Fatal("opened with a sealed seed and a different plaintext one")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if identity(t, b) != want {
				t.Fatal("keys changed across the interrupted migration")
			}
			tmps, _ := filepath.Glob(filepath.Join(dir, "*.tmp"))
			for _, p := range tmps {
				// A torn sealed temporary holds no plaintext.
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
			}
			scan(t, dir)
		})
	}
}

func TestSealedSeedRefused(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, dir string)
		open   *sealer.Sealer // nil: the right one
	}{
		{"a flipped byte", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "operator.nk.sealed")
			b, _ := os.ReadFile(p)
			b[len(b)-5] ^= 1
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}, nil},
		{"another account's seed moved in", func(t *testing.T, dir string) {
			b, _ := os.ReadFile(filepath.Join(dir, "system.nk.sealed"))
			if err := os.WriteFile(filepath.Join(dir, "ingest.nk.sealed"), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}, nil},
		{"another org's key moved in", func(t *testing.T, dir string) {
			b, _ := os.ReadFile(filepath.Join(dir, "orgs", "org_a.nk.sealed"))
			if err := os.WriteFile(filepath.Join(dir, "orgs", "org_b.nk.sealed"), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}, nil},
		{"another key", func(t *testing.T, dir string) {}, newSealer(t)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := newSealer(t)
			a := open(t, dir, s)
			for _, org := range []string{"org_a", "org_b"} {
				if _, err := a.EnsureOrg(ctx, org); err != nil {
					t.Fatal(err)
				}
			}
			tc.tamper(t, dir)
			with := s
			if tc.open != nil {
				with = tc.open
			}
			b, err := natsauth.Open(ctx, dir, natsauth.Options{Sealer: with})
			if err == nil {
				// Org keys load on first use.
				_, err = b.EnsureOrg(ctx, "org_b")
			}
			if !errors.Is(err, sealer.ErrUnreadable) {
				t.Fatalf("tampered seeds: %v, want refused as unreadable", err)
			}
		})
	}
}

func TestOpenNeedsSealer(t *testing.T) {
	if _, err := natsauth.Open(context.Background(), t.TempDir(), natsauth.Options{}); err == nil {
		t.Fatal("opened without a sealer")
	}
}
