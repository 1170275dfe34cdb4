// Package keywrap wraps DEKs with AES-256-GCM under one or more versions of
// a 256-bit master key held in memory: the mechanism behind the byok and
// local master keys. The newest version wraps; every version unwraps.
//
// A wrapped DEK is nonce(12) ‖ GCM(dek)(32) ‖ tag(16); the associated data
// binds it to its org and DEK id, so it cannot be moved to another org or
// swapped with another DEK row. A version is a fingerprint of the key
// (truncated HMAC-SHA256 of a fixed label under the key), which identifies
// the key without revealing it.
package keywrap

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"

	"github.com/persiv/codex/edge/keyring"
)

// KeySize is the length of a master key in bytes.
const KeySize = 32

const (
	nonceLen       = 12
	wrappedLen     = nonceLen + keyring.DEKSize + 16
	fingerprintMsg = "persiv codex master key fingerprint v1"
	aadLabel       = "persiv codex dek wrap v1"
)

// Fingerprint returns the version id of a master key: 16 hex digits of
// HMAC-SHA256(key, fixed label).
func Fingerprint(key []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(fingerprintMsg))
	return hex.EncodeToString(m.Sum(nil)[:8])
}

type version struct {
	id   string
	aead cipher.AEAD
}

// Ring is a set of master key versions under one reference.
type Ring struct {
	ref      string
	versions []version // newest first
}

// New returns a Ring named ref whose first key wraps and all keys unwrap.
// It copies nothing it does not need: the caller should clear keys after.
// Duplicate keys are an error, since they hint at a configuration mistake.
func New(ref string, keys ...[]byte) (*Ring, error) {
	if len(keys) == 0 {
		return nil, errors.New("keywrap: no key")
	}
	r := &Ring{ref: ref}
	seen := make(map[string]int, len(keys))
	for i, k := range keys {
		if len(k) != KeySize {
			return nil, fmt.Errorf("keywrap: key %d has %d bytes, want %d", i+1, len(k), KeySize)
		}
		id := Fingerprint(k)
		if j, dup := seen[id]; dup {
			return nil, fmt.Errorf("keywrap: key %d repeats key %d", i+1, j+1)
		}
		seen[id] = i
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, fmt.Errorf("keywrap: %w", err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("keywrap: %w", err)
		}
		r.versions = append(r.versions, version{id: id, aead: aead})
	}
	return r, nil
}

var _ keyring.MasterKey = (*Ring)(nil)

// Ref implements keyring.MasterKey.
func (r *Ring) Ref() string { return r.ref }

// Versions returns the version ids, newest (the one that wraps) first.
func (r *Ring) Versions() []string {
	out := make([]string, len(r.versions))
	for i, v := range r.versions {
		out[i] = v.id
	}
	return out
}

// LogValue shows the reference and versions, never key material.
func (r *Ring) LogValue() slog.Value {
	return slog.GroupValue(slog.String("ref", r.ref), slog.Any("versions", r.Versions()))
}

func aad(b keyring.Binding) []byte {
	out := make([]byte, 0, len(aadLabel)+4+len(b.OrgID)+len(b.DEKID))
	out = append(out, aadLabel...)
	out = binary.BigEndian.AppendUint32(out, uint32(len(b.OrgID)))
	out = append(out, b.OrgID...)
	return append(out, b.DEKID[:]...)
}

// Generate implements keyring.MasterKey.
func (r *Ring) Generate(ctx context.Context, b keyring.Binding) ([]byte, keyring.Wrap, error) {
	dek := make([]byte, keyring.DEKSize)
	if _, err := rand.Read(dek); err != nil {
		return nil, keyring.Wrap{}, fmt.Errorf("keywrap: %w", err)
	}
	w, err := r.Wrap(ctx, b, dek)
	if err != nil {
		clear(dek)
		return nil, keyring.Wrap{}, err
	}
	return dek, w, nil
}

// Wrap implements keyring.MasterKey.
func (r *Ring) Wrap(_ context.Context, b keyring.Binding, dek []byte) (keyring.Wrap, error) {
	if len(dek) != keyring.DEKSize {
		return keyring.Wrap{}, fmt.Errorf("keywrap: data key has %d bytes, want %d", len(dek), keyring.DEKSize)
	}
	v := r.versions[0]
	out := make([]byte, nonceLen, wrappedLen)
	if _, err := rand.Read(out); err != nil {
		return keyring.Wrap{}, fmt.Errorf("keywrap: %w", err)
	}
	out = v.aead.Seal(out, out[:nonceLen], dek, aad(b))
	return keyring.Wrap{Ref: r.ref, Version: v.id, Blob: out}, nil
}

// Unwrap implements keyring.MasterKey.
func (r *Ring) Unwrap(_ context.Context, b keyring.Binding, w keyring.Wrap) ([]byte, error) {
	if w.Ref != r.ref {
		return nil, fmt.Errorf("%w: data key wrapped by %q, not %q", keyring.ErrUnreadable, w.Ref, r.ref)
	}
	for _, v := range r.versions {
		if v.id != w.Version {
			continue
		}
		if len(w.Blob) != wrappedLen {
			return nil, fmt.Errorf("%w: wrapped data key has %d bytes, want %d", keyring.ErrUnreadable, len(w.Blob), wrappedLen)
		}
		dek, err := v.aead.Open(nil, w.Blob[:nonceLen], w.Blob[nonceLen:], aad(b))
		if err != nil {
			return nil, fmt.Errorf("%w: wrapped data key fails authentication under %s version %s", keyring.ErrUnreadable, r.ref, v.id)
		}
		return dek, nil
	}
	return nil, fmt.Errorf("%w: %s key version %s is not configured", keyring.ErrUnreadable, r.ref, w.Version)
}

// Current implements keyring.MasterKey.
func (r *Ring) Current(_ context.Context, w keyring.Wrap) (bool, error) {
	return w.Ref == r.ref && w.Version == r.versions[0].id, nil
}
