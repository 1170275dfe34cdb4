package keyring

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/hex"
	"errors"
	"testing"
)

func testAEAD(t testing.TB) cipher.AEAD {
	t.Helper()
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(i)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	return aead
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Known answers: key 00..1f, DEK id 10..1f, nonce a0..ab. Changing any of
// these bytes breaks every ciphertext ever stored; the vectors are also in
// schemas/crypto/ciphertext.md.
func TestKnownAnswers(t *testing.T) {
	t.Parallel()
	var id DEKID
	for i := range id {
		id[i] = byte(0x10 + i)
	}
	nonce := mustHex(t, "a0a1a2a3a4a5a6a7a8a9aaab")
	tests := []struct {
		name      string
		org       string
		purpose   Purpose
		record    string
		plaintext string
		aad       string
		want      string
	}{
		{
			name: "cache entry", org: "org_1", purpose: PurposeCache, record: "fp:abc", plaintext: "hello, world",
			aad:  "01" + "101112131415161718191a1b1c1d1e1f" + "00000005" + hex.EncodeToString([]byte("org_1")) + "05" + hex.EncodeToString([]byte("cache")) + hex.EncodeToString([]byte("fp:abc")),
			want: "01101112131415161718191a1b1c1d1e1fa0a1a2a3a4a5a6a7a8a9aaab8e7d10412ae722c80d17ebb7964dbd6d823ccc5d3506cc8a1c0b2581",
		},
		{
			name: "empty plaintext and record", org: "o", purpose: PurposeCredential, record: "", plaintext: "",
			aad:  "01" + "101112131415161718191a1b1c1d1e1f" + "00000001" + "6f" + "0a" + hex.EncodeToString([]byte("credential")),
			want: "01101112131415161718191a1b1c1d1e1fa0a1a2a3a4a5a6a7a8a9aaabeedd3bddcd2910591c7d4dfaf302c3a1",
		},
	}
	aead := testAEAD(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			aad := appendAAD(nil, id, tt.org, tt.purpose, tt.record)
			if got := hex.EncodeToString(aad); got != tt.aad {
				t.Fatalf("aad\n got %s\nwant %s", got, tt.aad)
			}
			ct, err := sealWith(aead, id, nonce, tt.org, tt.purpose, tt.record, []byte(tt.plaintext))
			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(ct); got != tt.want {
				t.Fatalf("ciphertext\n got %s\nwant %s", got, tt.want)
			}
			// Independent construction: header, then plain GCM with the AAD above.
			header := mustHex(t, tt.want)[:headerLen]
			if indep := append(header, aead.Seal(nil, nonce, []byte(tt.plaintext), mustHex(t, tt.aad))...); !bytes.Equal(ct, indep) {
				t.Fatalf("ciphertext differs from header ‖ GCM(key, nonce, plaintext, aad)")
			}
			h, err := parseHeader(ct)
			if err != nil {
				t.Fatal(err)
			}
			pt, err := openWith(aead, h, tt.org, tt.purpose, tt.record)
			if err != nil || string(pt) != tt.plaintext {
				t.Fatalf("open = %q, %v", pt, err)
			}
		})
	}
}

func TestParseHeaderRejects(t *testing.T) {
	t.Parallel()
	ok := make([]byte, Overhead)
	ok[0] = formatV1
	tests := []struct {
		name string
		in   []byte
	}{
		{"nil", nil},
		{"one byte short", ok[:Overhead-1]},
		{"version 0", append([]byte{0}, ok[1:]...)},
		{"version 2", append([]byte{2}, ok[1:]...)},
	}
	for _, tt := range tests {
		if _, err := parseHeader(tt.in); !errors.Is(err, ErrUnreadable) {
			t.Errorf("%s: err = %v, want ErrUnreadable", tt.name, err)
		}
	}
	if _, err := parseHeader(ok); err != nil {
		t.Errorf("minimal ciphertext: %v", err)
	}
}

// The AAD must be injective: bindings that differ only in where one field
// ends and the next begins must not collide.
func TestAADUnambiguous(t *testing.T) {
	t.Parallel()
	var id DEKID
	a := appendAAD(nil, id, "org_1", PurposeCache, "x")
	b := appendAAD(nil, id, "org_1c", PurposeCache, "x")
	c := appendAAD(nil, id, "org_", PurposeCache, "1x")
	if bytes.Equal(a, b) || bytes.Equal(a, c) || bytes.Equal(b, c) {
		t.Fatal("AAD collision")
	}
}
