package keyring_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/persiv/codex/edge/keyring"
)

// FuzzOpen feeds arbitrary bytes to Open: it must never panic, never
// report an infrastructure error (the store works), and never accept
// anything but the ciphertexts it sealed.
func FuzzOpen(f *testing.F) {
	k := newRing(f, keyring.NewMemStore(), byokKey(f, testKey(1)), nil)
	valid := seal(f, k, "org_a", keyring.PurposeCache, "r", "plaintext")
	f.Add(valid, "org_a", "r")
	f.Add(valid[:keyring.Overhead], "org_a", "r")
	f.Add([]byte{1}, "org_a", "")
	f.Add(bytes.Repeat([]byte{1}, 100), "org_b", "r")
	f.Fuzz(func(t *testing.T, ct []byte, org, rec string) {
		if org == "" {
			org = "org_a"
		}
		pt, err := k.Open(context.Background(), org, keyring.PurposeCache, rec, ct)
		switch {
		case err == nil:
			if !bytes.Equal(ct, valid) || org != "org_a" || rec != "r" || string(pt) != "plaintext" {
				t.Fatalf("opened a ciphertext it never sealed: %x", ct)
			}
		case !errors.Is(err, keyring.ErrUnreadable) && !errors.Is(err, keyring.ErrInvalidInput):
			t.Fatalf("unexpected error kind: %v", err)
		}
	})
}

func benchRing(b *testing.B) *keyring.Keyring {
	k := newRing(b, keyring.NewMemStore(), byokKey(b, testKey(1)), nil)
	seal(b, k, "org_bench", keyring.PurposeCache, "warm", "w")
	return k
}

func BenchmarkSeal(b *testing.B) {
	for _, size := range []struct {
		name string
		n    int
	}{{"1KiB", 1 << 10}, {"64KiB", 64 << 10}} {
		b.Run(size.name, func(b *testing.B) {
			k := benchRing(b)
			pt := make([]byte, size.n)
			ctx := context.Background()
			b.SetBytes(int64(size.n))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := k.Seal(ctx, "org_bench", keyring.PurposeCache, "org:org_bench:cache:0123456789abcdef", pt); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkOpen(b *testing.B) {
	for _, size := range []struct {
		name string
		n    int
	}{{"1KiB", 1 << 10}, {"64KiB", 64 << 10}} {
		b.Run(size.name, func(b *testing.B) {
			k := benchRing(b)
			ctx := context.Background()
			rec := "org:org_bench:cache:0123456789abcdef"
			ct, err := k.Seal(ctx, "org_bench", keyring.PurposeCache, rec, make([]byte, size.n))
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(size.n))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := k.Open(ctx, "org_bench", keyring.PurposeCache, rec, ct); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDEKCacheHit is the keyring's own cost on the request path: a
// warm org, an empty record, so the AES work is negligible.
func BenchmarkDEKCacheHit(b *testing.B) {
	k := benchRing(b)
	ctx := context.Background()
	ct, err := k.Seal(ctx, "org_bench", keyring.PurposeCache, "", nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := k.Open(ctx, "org_bench", keyring.PurposeCache, "", ct); err != nil {
				b.Fatal(err)
			}
		}
	})
}
