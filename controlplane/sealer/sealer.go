// Package sealer seals the control plane's secrets at rest, such as its
// NATS operator and account seeds. Each record is encrypted with
// AES-256-GCM under a fresh data key, whose associated data binds the
// record's purpose and name, so a sealed record cannot be moved to another
// record or purpose. A KeyProvider wraps the data key under a master key
// that never lies next to the data: an AWS KMS key (package
// sealer/awskms) in production, a local 256-bit key (LocalKey) for
// development.
//
// A sealed record is
//
//	"cxs1" ‖ len(ref) (1 byte) ‖ ref ‖ len(wrapped) (2 bytes, big endian) ‖ wrapped data key ‖ nonce (12) ‖ ciphertext ‖ tag (16)
//
// where ref names the key provider; the header is part of the associated
// data too.
package sealer

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
)

// KeySize is the size of data keys and local master keys: 256 bits.
const KeySize = 32

// Magic starts every sealed record.
const Magic = "cxs1"

const nonceLen = 12

// ErrUnreadable means a sealed record cannot be opened: it was tampered
// with, moved to another record, or sealed under another master key.
var ErrUnreadable = errors.New("sealed record cannot be opened (tampered with, moved, or sealed under another key)")

// Binding names what a record is; it is bound to the record as
// associated data (and, for KMS, as encryption context).
type Binding struct {
	Purpose string // e.g. "nats-seed"
	Name    string // the record, e.g. "operator" or "org/<org_id>"
}

// KeyProvider wraps and unwraps data keys under a master key.
type KeyProvider interface {
	// Ref names the provider in sealed records ("local", "awskms").
	Ref() string
	Wrap(ctx context.Context, b Binding, dataKey []byte) ([]byte, error)
	// Unwrap returns an error wrapping ErrUnreadable when the master key
	// refuses the wrapped key.
	Unwrap(ctx context.Context, b Binding, wrapped []byte) ([]byte, error)
}

// Sealer seals and opens records with one key provider.
type Sealer struct {
	kp KeyProvider
}

// New returns a Sealer over kp.
func New(kp KeyProvider) *Sealer { return &Sealer{kp: kp} }

// Ref names the Sealer's key provider.
func (s *Sealer) Ref() string { return s.kp.Ref() }

// IsSealed reports whether data looks like a sealed record (it may still
// fail to open).
func IsSealed(data []byte) bool { return bytes.HasPrefix(data, []byte(Magic)) }

// aad is the associated data: a label, the binding (length-prefixed, so
// no two bindings share an encoding) and the record's header.
func aad(label string, b Binding, header []byte) []byte {
	out := []byte(label)
	for _, s := range []string{b.Purpose, b.Name} {
		out = binary.BigEndian.AppendUint32(out, uint32(len(s)))
		out = append(out, s...)
	}
	return append(out, header...)
}

func gcm(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Seal encrypts plaintext as the record b.
func (s *Sealer) Seal(ctx context.Context, b Binding, plaintext []byte) ([]byte, error) {
	if b.Purpose == "" || b.Name == "" {
		return nil, errors.New("sealer: empty purpose or record name")
	}
	dataKey := make([]byte, KeySize)
	defer clear(dataKey)
	if _, err := rand.Read(dataKey); err != nil {
		return nil, fmt.Errorf("sealer: %w", err)
	}
	wrapped, err := s.kp.Wrap(ctx, b, dataKey)
	if err != nil {
		return nil, fmt.Errorf("sealer: wrap the data key: %w", err)
	}
	ref := s.kp.Ref()
	if len(ref) > 255 || len(wrapped) > 65535 {
		return nil, errors.New("sealer: key provider reference or wrapped key too long")
	}
	header := append([]byte(Magic), byte(len(ref)))
	header = append(header, ref...)
	header = binary.BigEndian.AppendUint16(header, uint16(len(wrapped)))
	header = append(header, wrapped...)
	aead, err := gcm(dataKey)
	if err != nil {
		return nil, fmt.Errorf("sealer: %w", err)
	}
	nonce := make([]byte, nonceLen)
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("sealer: %w", err)
	}
	out := append(header, nonce...)
	return aead.Seal(out, nonce, plaintext, aad("codex-sealer v1 record", b, header)), nil
}

// Open decrypts the record b. A record that was tampered with, belongs to
// another binding, or was sealed under another master key gives an error
// wrapping ErrUnreadable. The caller should clear the plaintext after use.
func (s *Sealer) Open(ctx context.Context, b Binding, sealed []byte) ([]byte, error) {
	header, wrapped, rest, ref, err := parse(sealed)
	if err != nil {
		return nil, err
	}
	if ref != s.kp.Ref() {
		return nil, fmt.Errorf("sealer: %w: sealed by key provider %q, this one is %q", ErrUnreadable, ref, s.kp.Ref())
	}
	dataKey, err := s.kp.Unwrap(ctx, b, wrapped)
	if err != nil {
		return nil, fmt.Errorf("sealer: unwrap the data key of %s/%s: %w", b.Purpose, b.Name, err)
	}
	defer clear(dataKey)
	aead, err := gcm(dataKey)
	if err != nil {
		return nil, fmt.Errorf("sealer: %w: %v", ErrUnreadable, err)
	}
	pt, err := aead.Open(nil, rest[:nonceLen], rest[nonceLen:], aad("codex-sealer v1 record", b, header))
	if err != nil {
		return nil, fmt.Errorf("sealer: %s/%s: %w", b.Purpose, b.Name, ErrUnreadable)
	}
	return pt, nil
}

func parse(sealed []byte) (header, wrapped, rest []byte, ref string, err error) {
	bad := fmt.Errorf("sealer: %w: not a sealed record", ErrUnreadable)
	if !IsSealed(sealed) || len(sealed) < len(Magic)+1 {
		return nil, nil, nil, "", bad
	}
	p := len(Magic)
	n := int(sealed[p])
	p++
	if len(sealed) < p+n+2 {
		return nil, nil, nil, "", bad
	}
	ref = string(sealed[p : p+n])
	p += n
	w := int(binary.BigEndian.Uint16(sealed[p:]))
	p += 2
	if len(sealed) < p+w+nonceLen+16 {
		return nil, nil, nil, "", bad
	}
	return sealed[:p+w], sealed[p : p+w], sealed[p+w:], ref, nil
}
