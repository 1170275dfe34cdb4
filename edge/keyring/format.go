package keyring

import (
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"math"

	"github.com/google/uuid"
)

// Ciphertext layout, version 1 (schemas/crypto/ciphertext.md):
//
//	offset  size  field
//	0       1     format version (0x01)
//	1       16    DEK id
//	17      12    nonce, fresh from crypto/rand for every seal
//	29      n+16  AES-256-GCM ciphertext and tag
//
// The associated data is never stored; it is rebuilt from the caller's
// arguments, so a ciphertext moved to another org, purpose or record fails
// to authenticate.
const (
	formatV1  byte = 0x01
	dekIDLen       = 16
	nonceLen       = 12
	tagLen         = 16
	headerLen      = 1 + dekIDLen + nonceLen

	// Overhead is how many bytes Seal adds to a plaintext.
	Overhead = headerLen + tagLen
)

// maxAADField bounds the org id and record key so that the length prefixes
// cannot overflow and a caller bug cannot turn the AAD into megabytes.
const maxAADField = 1 << 16

// DEKID names a data key. It travels in every ciphertext (16 raw bytes) and
// in the store (its String form, a UUID). It is not secret.
type DEKID [dekIDLen]byte

// NewDEKID returns a fresh, time-ordered DEK id (UUIDv7).
func NewDEKID() (DEKID, error) {
	u, err := uuid.NewV7()
	if err != nil {
		return DEKID{}, fmt.Errorf("new dek id: %w", err)
	}
	return DEKID(u), nil
}

// ParseDEKID parses the String form of a DEK id.
func ParseDEKID(s string) (DEKID, error) {
	u, err := uuid.Parse(s)
	if err != nil {
		return DEKID{}, fmt.Errorf("parse dek id: %w", err)
	}
	return DEKID(u), nil
}

// String returns the id in UUID form.
func (id DEKID) String() string { return uuid.UUID(id).String() }

// IsZero reports whether id is the zero id, which no DEK has.
func (id DEKID) IsZero() bool { return id == DEKID{} }

// Purpose says what a ciphertext holds. It is bound into the associated
// data, so a credential cannot be replayed as a cache entry, for example.
type Purpose string

const (
	PurposeCache      Purpose = "cache"
	PurposeCredential Purpose = "credential"
	PurposeAudit      Purpose = "audit"
	PurposeMemory     Purpose = "memory"
	PurposeTelemetry  Purpose = "telemetry"
	PurposeSecret     Purpose = "secret"
)

// Purposes lists every valid purpose.
func Purposes() []Purpose {
	return []Purpose{PurposeCache, PurposeCredential, PurposeAudit, PurposeMemory, PurposeTelemetry, PurposeSecret}
}

// Valid reports whether p is one of the defined purposes.
func (p Purpose) Valid() bool {
	switch p {
	case PurposeCache, PurposeCredential, PurposeAudit, PurposeMemory, PurposeTelemetry, PurposeSecret:
		return true
	}
	return false
}

// header is the parsed fixed-size prefix of a ciphertext.
type header struct {
	id    DEKID
	nonce []byte
	body  []byte // GCM ciphertext with tag
}

// parseHeader splits a ciphertext. Every failure is unreadable: the bytes
// came from storage and are not trusted.
func parseHeader(ct []byte) (header, error) {
	if len(ct) < Overhead {
		return header{}, fmt.Errorf("%w: ciphertext of %d bytes is shorter than the %d-byte minimum", ErrUnreadable, len(ct), Overhead)
	}
	if ct[0] != formatV1 {
		return header{}, fmt.Errorf("%w: unknown ciphertext format version %d", ErrUnreadable, ct[0])
	}
	var h header
	copy(h.id[:], ct[1:1+dekIDLen])
	h.nonce = ct[1+dekIDLen : headerLen]
	h.body = ct[headerLen:]
	return h, nil
}

// checkBinding validates the fields that go into the associated data.
func checkBinding(orgID string, p Purpose, recordKey string) error {
	if orgID == "" {
		return fmt.Errorf("%w: empty org id", ErrInvalidInput)
	}
	if len(orgID) > maxAADField || len(recordKey) > maxAADField {
		return fmt.Errorf("%w: org id or record key longer than %d bytes", ErrInvalidInput, maxAADField)
	}
	if !p.Valid() {
		return fmt.Errorf("%w: unknown purpose %q", ErrInvalidInput, string(p))
	}
	return nil
}

// appendAAD appends version ‖ DEK id ‖ u32(len org) ‖ org ‖ u8(len purpose)
// ‖ purpose ‖ record key. Every field but the last is fixed-size or
// length-prefixed, so two different bindings never produce the same bytes.
func appendAAD(dst []byte, id DEKID, orgID string, p Purpose, recordKey string) []byte {
	dst = append(dst, formatV1)
	dst = append(dst, id[:]...)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(orgID)))
	dst = append(dst, orgID...)
	if len(p) > math.MaxUint8 {
		panic("keyring: purpose too long") // purposes are a fixed set of short constants
	}
	dst = append(dst, byte(len(p)))
	dst = append(dst, p...)
	dst = append(dst, recordKey...)
	return dst
}

// sealWith encrypts plaintext under aead. nonce is nil in production (a
// fresh random nonce is drawn); tests pass a fixed one for known answers.
func sealWith(aead cipher.AEAD, id DEKID, nonce []byte, orgID string, p Purpose, recordKey string, plaintext []byte) ([]byte, error) {
	// One allocation holds the ciphertext and, past its end, the AAD: the
	// two never overlap, and the result is capped before the AAD.
	ctLen := headerLen + len(plaintext) + tagLen
	buf := make([]byte, headerLen, ctLen+aadLen(orgID, p, recordKey))
	buf[0] = formatV1
	copy(buf[1:], id[:])
	n := buf[1+dekIDLen : headerLen]
	if nonce == nil {
		if _, err := rand.Read(n); err != nil {
			return nil, fmt.Errorf("seal: nonce: %w", err)
		}
	} else {
		copy(n, nonce)
	}
	aad := appendAAD(buf[ctLen:ctLen], id, orgID, p, recordKey)
	return aead.Seal(buf, n, plaintext, aad)[:ctLen:ctLen], nil
}

// aadLen is the length appendAAD produces.
func aadLen(orgID string, p Purpose, recordKey string) int {
	return 1 + dekIDLen + 4 + len(orgID) + 1 + len(p) + len(recordKey)
}

// openWith decrypts a parsed ciphertext.
func openWith(aead cipher.AEAD, h header, orgID string, p Purpose, recordKey string) ([]byte, error) {
	ptLen := len(h.body) - tagLen
	buf := make([]byte, 0, ptLen+aadLen(orgID, p, recordKey))
	aad := appendAAD(buf[ptLen:ptLen], h.id, orgID, p, recordKey)
	pt, err := aead.Open(buf[:0:ptLen], h.nonce, h.body, aad)
	if err != nil {
		return nil, fmt.Errorf("%w: authentication failed (tampered, or bound to another org, purpose or record)", ErrUnreadable)
	}
	return pt, nil
}
