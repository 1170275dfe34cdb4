// Package password hashes user passwords with argon2id in the PHC string
// format ($argon2id$v=19$m=…,t=…,p=…$salt$hash), so parameters can be
// raised later without invalidating stored hashes.
package password

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Parameters of new hashes: RFC 9106's second recommended option
// (64 MiB, 3 passes), with 2 lanes.
const (
	memoryKiB = 64 * 1024
	passes    = 3
	lanes     = 2
	saltLen   = 16
	keyLen    = 32
)

// Memory is the memory, in bytes, a Hash holds while it runs, and a Verify
// of a hash Hash made.
const Memory = memoryKiB << 10

// MinLength and MaxLength bound a password.
const (
	MinLength = 12
	MaxLength = 1024
)

// ErrMismatch is returned by Verify for a wrong password.
var ErrMismatch = errors.New("password does not match")

var b64 = base64.RawStdEncoding

// Hash returns the PHC string of pw.
func Hash(pw string) (string, error) {
	if len(pw) < MinLength || len(pw) > MaxLength {
		return "", fmt.Errorf("password must be %d to %d bytes long", MinLength, MaxLength)
	}
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("salt: %w", err)
	}
	key := argon2.IDKey([]byte(pw), salt, passes, memoryKiB, lanes, keyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, memoryKiB, passes, lanes, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// Verify checks pw against a PHC string made by Hash, in constant time.
func Verify(pw, phc string) error {
	parts := strings.Split(phc, "$")
	if len(parts) != 6 || parts[1] != "argon2id" || parts[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return errors.New("not an argon2id hash")
	}
	var m uint32
	var t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m > 1<<22 || t > 16 || p == 0 {
		return errors.New("bad argon2id parameters")
	}
	salt, err := b64.DecodeString(parts[4])
	if err != nil {
		return errors.New("bad argon2id salt")
	}
	want, err := b64.DecodeString(parts[5])
	if err != nil || len(want) < 16 || len(want) > 64 {
		return errors.New("bad argon2id hash")
	}
	got := argon2.IDKey([]byte(pw), salt, t, m, p, uint32(len(want)))
	if subtle.ConstantTimeCompare(got, want) != 1 {
		return ErrMismatch
	}
	return nil
}
