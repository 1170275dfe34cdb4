// Package byok is the master key a customer brings: one or more 256-bit
// keys given as base64 or hex through CODEX_BYOK_KEY or CODEX_BYOK_KEY_FILE
// (the current version, which wraps new DEKs) and CODEX_BYOK_PREVIOUS_KEYS
// (older versions, comma-separated, which still unwrap). Keys are held in
// memory only, never written and never logged; removing a version from the
// configuration makes every DEK still wrapped by it, and so all data under
// those DEKs, unreadable.
package byok

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/persiv/codex/edge/keyring"
	"github.com/persiv/codex/edge/keyring/internal/keywrap"
)

// Ref is the master key reference recorded with DEKs this package wraps.
const Ref = "byok"

// Environment variables read by FromEnv.
const (
	EnvKey          = "CODEX_BYOK_KEY"
	EnvKeyFile      = "CODEX_BYOK_KEY_FILE"
	EnvPreviousKeys = "CODEX_BYOK_PREVIOUS_KEYS"
)

// MasterKey implements keyring.MasterKey with the customer's keys.
type MasterKey struct {
	*keywrap.Ring
}

var _ keyring.MasterKey = (*MasterKey)(nil)

// New returns a MasterKey whose current version is current and whose older
// versions are previous. The caller may clear the slices afterwards.
func New(current []byte, previous ...[]byte) (*MasterKey, error) {
	r, err := keywrap.New(Ref, append([][]byte{current}, previous...)...)
	if err != nil {
		return nil, fmt.Errorf("byok: %w", err)
	}
	return &MasterKey{r}, nil
}

// LogValue shows the versions (fingerprints) only.
func (m *MasterKey) LogValue() slog.Value { return m.Ring.LogValue() }

// String never shows key material either.
func (m *MasterKey) String() string {
	return fmt.Sprintf("byok%v", m.Versions())
}

// ParseKey decodes a 256-bit key written as hex (64 digits) or base64
// (standard or URL alphabet, padded or not). Only surrounding whitespace is
// ignored: base64 must be canonical (Strict: zero padding bits) and may not
// contain line breaks, so that one key has exactly one accepted spelling per
// encoding and a mangled value is refused rather than silently read as
// another key. Errors describe the problem and never echo the input.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("empty key")
	}
	if len(s) == 2*keywrap.KeySize && isHex(s) {
		b, err := hex.DecodeString(s)
		if err != nil {
			return nil, errors.New("invalid hex")
		}
		return b, nil
	}
	if strings.ContainsAny(s, " \t\r\n\v\f") {
		// The base64 decoders skip '\r' and '\n' anywhere, even in Strict
		// mode.
		return nil, fmt.Errorf("whitespace inside the key (%d characters); only leading and trailing whitespace is ignored", len(s))
	}
	decodedLen := -1
	for _, enc := range strictEncodings {
		b, err := enc.DecodeString(s)
		if err != nil {
			continue
		}
		if len(b) == keywrap.KeySize {
			return b, nil
		}
		decodedLen = len(b)
		clear(b)
	}
	if isHex(s) {
		return nil, fmt.Errorf("hex key of %d digits, want %d (a 256-bit key)", len(s), 2*keywrap.KeySize)
	}
	if decodedLen >= 0 {
		return nil, fmt.Errorf("base64 key decodes to %d bytes, want %d (a 256-bit key)", decodedLen, keywrap.KeySize)
	}
	return nil, fmt.Errorf("neither hex nor canonical base64 (%d characters)", len(s))
}

// strictEncodings are the base64 forms ParseKey accepts. Strict refuses
// non-zero padding bits, which would let several strings decode to the
// same key.
var strictEncodings = []*base64.Encoding{
	base64.StdEncoding.Strict(), base64.URLEncoding.Strict(),
	base64.RawStdEncoding.Strict(), base64.RawURLEncoding.Strict(),
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// FromEnv builds the MasterKey from CODEX_BYOK_KEY or CODEX_BYOK_KEY_FILE
// (exactly one) and CODEX_BYOK_PREVIOUS_KEYS, read through getenv (os.Getenv
// in production). Errors name the variable and the problem, never the key.
func FromEnv(getenv func(string) string) (*MasterKey, error) {
	var keys [][]byte
	defer func() {
		for _, k := range keys {
			clear(k)
		}
	}()
	val, file := getenv(EnvKey), getenv(EnvKeyFile)
	var cur []byte
	var err error
	switch {
	case strings.TrimSpace(val) != "" && strings.TrimSpace(file) != "":
		return nil, fmt.Errorf("byok: set %s or %s, not both", EnvKey, EnvKeyFile)
	case strings.TrimSpace(val) != "":
		if cur, err = ParseKey(val); err != nil {
			return nil, fmt.Errorf("byok: %s: %w", EnvKey, err)
		}
	case strings.TrimSpace(file) != "":
		raw, err := os.ReadFile(strings.TrimSpace(file))
		if err != nil {
			return nil, fmt.Errorf("byok: %s: %w", EnvKeyFile, err)
		}
		cur, err = ParseKey(string(raw))
		clear(raw)
		if err != nil {
			return nil, fmt.Errorf("byok: %s (%s): %w", EnvKeyFile, file, err)
		}
	default:
		return nil, fmt.Errorf("byok: CODEX_KEK=byok needs %s or %s", EnvKey, EnvKeyFile)
	}
	keys = append(keys, cur)
	if prev := getenv(EnvPreviousKeys); strings.TrimSpace(prev) != "" {
		for i, part := range strings.Split(prev, ",") {
			if strings.TrimSpace(part) == "" {
				continue // tolerate "a,,b" and a trailing comma
			}
			k, err := ParseKey(part)
			if err != nil {
				return nil, fmt.Errorf("byok: %s entry %d: %w", EnvPreviousKeys, i+1, err)
			}
			keys = append(keys, k)
		}
	}
	m, err := New(keys[0], keys[1:]...)
	if err != nil {
		return nil, fmt.Errorf("%w (%s is key 1, %s entries follow)", err, EnvKey, EnvPreviousKeys)
	}
	return m, nil
}
