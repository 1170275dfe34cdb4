// Package apikey defines the gateway key format of codex-edge: how keys are
// generated, recognised, checked and hashed, and how a request carries one.
//
// A gateway key is
//
//	pk_live_ + 43 random base62 characters + 6 base62 checksum characters
//
// 43 base62 characters hold 43·log2(62) ≈ 256.0 bits, drawn from crypto/rand
// without modulo bias. The checksum is the CRC-32 (IEEE) of the 43 random
// characters, written in base62, most significant digit first, zero-padded
// to 6 characters; like GitHub's token format it lets secret scanners
// recognise a key with few false positives and lets the edge reject a
// mistyped key before any store lookup. The base62 alphabet is 0-9, A-Z,
// a-z in that order.
//
// Only the SHA-256 of a key is stored (see [Hash]); [DisplayPrefix] is the
// short non-secret part shown in listings.
package apikey

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
)

const (
	// Prefix starts every gateway key.
	Prefix = "pk_live_"
	// RandomLen is the number of random base62 characters after Prefix.
	RandomLen = 43
	// ChecksumLen is the number of base62 checksum characters at the end.
	ChecksumLen = 6
	// Len is the length of a gateway key.
	Len = len(Prefix) + RandomLen + ChecksumLen

	// displayRandom is how many random characters DisplayPrefix keeps:
	// 24 bits, which identify a key in a listing but leave 232 secret bits.
	displayRandom = 4

	alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	// maxUnbiased is the largest multiple of 62 not above 256: random bytes
	// at or above it are rejected so that b%62 is uniform.
	maxUnbiased = 62 * 4
)

// Errors returned by Parse. They never contain the input.
var (
	// ErrFormat means the string is not shaped like a gateway key: wrong
	// length, wrong prefix, or a character outside base62.
	ErrFormat = errors.New("apikey: malformed gateway key")
	// ErrChecksum means the string is shaped like a gateway key but its
	// checksum does not match: a typo or a truncated copy.
	ErrChecksum = errors.New("apikey: gateway key checksum mismatch")
)

// Secret is a gateway key in plaintext. Every way of printing or logging it
// (String, Format with any verb, LogValue, MarshalText) yields a redacted
// form; Reveal is the only way to get the key itself.
type Secret string

// redacted is printed for a Secret that is not shaped like a gateway key,
// since its leading characters might then be secret.
const redacted = "[redacted]"

// Reveal returns the key itself. Call it only where the key must be shown or
// sent: the CLI printing a new key once, a client configuring its SDK.
func (s Secret) Reveal() string { return string(s) }

// String returns the redacted form: the display prefix followed by "…".
func (s Secret) String() string {
	if !shaped(string(s)) {
		return redacted
	}
	return string(s[:len(Prefix)+displayRandom]) + "…"
}

// GoString makes %#v redacted too.
func (s Secret) GoString() string { return s.String() }

// Format makes every fmt verb (%s, %v, %q, %x, …) print the redacted form.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'q' {
		fmt.Fprintf(f, "%q", s.String())
		return
	}
	// Format cannot return an error; fmt reports a failed write itself.
	_, _ = io.WriteString(f, s.String())
}

// LogValue makes slog print the redacted form.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText makes encoding/json, YAML and similar encoders write the
// redacted form, so a Secret put in a struct by mistake does not leak. To
// serialise the key on purpose, put Reveal's result in a string field.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Generate returns a new random gateway key.
func Generate() (Secret, error) {
	var b [Len]byte
	copy(b[:], Prefix)
	random := b[len(Prefix) : len(Prefix)+RandomLen]
	if err := fillBase62(random); err != nil {
		return "", fmt.Errorf("generate gateway key: %w", err)
	}
	putChecksum(b[len(Prefix)+RandomLen:], crc32.ChecksumIEEE(random))
	return Secret(b[:]), nil
}

// fillBase62 fills dst with uniformly random base62 characters from
// crypto/rand, rejecting bytes that would bias b%62.
func fillBase62(dst []byte) error {
	var pool [64]byte
	n := 0
	for n < len(dst) {
		if _, err := rand.Read(pool[:]); err != nil {
			return err
		}
		for _, c := range pool {
			if c >= maxUnbiased {
				continue
			}
			dst[n] = alphabet[c%62]
			n++
			if n == len(dst) {
				break
			}
		}
	}
	return nil
}

// putChecksum writes v in base62, most significant digit first, into all
// of dst (zero-padded).
func putChecksum(dst []byte, v uint32) {
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = alphabet[v%62]
		v /= 62
	}
}

// base62Value maps a byte to its base62 digit value, or 0xff.
var base62Value = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i := 0; i < len(alphabet); i++ {
		t[alphabet[i]] = byte(i)
	}
	return t
}()

// shaped reports whether s has a gateway key's length and prefix.
func shaped(s string) bool {
	return len(s) == Len && s[:len(Prefix)] == Prefix
}

// Parse checks that s is a well-formed gateway key with a valid checksum.
// It does not allocate, and its errors never contain s.
func Parse(s string) (Secret, error) {
	if !shaped(s) {
		return "", ErrFormat
	}
	for i := len(Prefix); i < Len; i++ {
		if base62Value[s[i]] == 0xff {
			return "", ErrFormat
		}
	}
	random := s[len(Prefix) : len(Prefix)+RandomLen]
	// The checksum is compared in its decoded form: 6 base62 digits can
	// exceed 32 bits, and such a value is simply a mismatch.
	var got uint64
	for i := len(Prefix) + RandomLen; i < Len; i++ {
		got = got*62 + uint64(base62Value[s[i]])
	}
	if got != uint64(crc32Str(random)) {
		return "", ErrChecksum
	}
	return Secret(s), nil
}

var crcTable = crc32.MakeTable(crc32.IEEE)

// crc32Str is crc32.ChecksumIEEE over a string. A byte-wise table loop over
// 43 bytes is as fast as the package's assembly here and, unlike a call
// through hash/crc32 with a copied []byte, does not allocate.
func crc32Str(s string) uint32 {
	crc := ^uint32(0)
	for i := 0; i < len(s); i++ {
		crc = crcTable[byte(crc)^s[i]] ^ crc>>8
	}
	return ^crc
}

// Hash returns the SHA-256 of the full key string: the only form of a key
// the edge stores and looks up.
func Hash(s Secret) [32]byte {
	if len(s) <= Len {
		// The common case hashes from the stack instead of a heap copy.
		var b [Len]byte
		n := copy(b[:], s)
		return sha256.Sum256(b[:n])
	}
	return sha256.Sum256([]byte(s))
}

// DisplayPrefix returns the non-secret part of a key shown in listings:
// Prefix and the first 4 random characters, e.g. "pk_live_Ab3x". It returns
// "" for a string that is not shaped like a gateway key.
func DisplayPrefix(s Secret) string {
	if !shaped(string(s)) {
		return ""
	}
	return string(s[:len(Prefix)+displayRandom])
}
