package sealer

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// LocalRef is LocalKey's reference in sealed records.
const LocalRef = "local"

// LocalKey is a master key held in memory: a 256-bit key from the
// environment (CODEX_SECRETS_KEK) or a file. Whoever reads it reads every
// record sealed under it: for development, or where no KMS exists and the
// key is kept apart from the data directory.
type LocalKey struct {
	aead cipher.AEAD
}

// NewLocalKey returns a LocalKey over key (32 bytes); the caller may clear
// key afterwards.
func NewLocalKey(key []byte) (*LocalKey, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("sealer: local key of %d bytes, want %d", len(key), KeySize)
	}
	aead, err := gcm(key)
	if err != nil {
		return nil, fmt.Errorf("sealer: %w", err)
	}
	return &LocalKey{aead: aead}, nil
}

// Ref implements KeyProvider.
func (*LocalKey) Ref() string { return LocalRef }

// String never shows the key.
func (*LocalKey) String() string { return "sealer.LocalKey" }

// Wrap implements KeyProvider: nonce ‖ AES-256-GCM(dataKey), bound to b.
func (k *LocalKey) Wrap(_ context.Context, b Binding, dataKey []byte) ([]byte, error) {
	nonce := make([]byte, nonceLen)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return k.aead.Seal(nonce, nonce, dataKey, aad("codex-sealer v1 local wrap", b, nil)), nil
}

// Unwrap implements KeyProvider.
func (k *LocalKey) Unwrap(_ context.Context, b Binding, wrapped []byte) ([]byte, error) {
	if len(wrapped) < nonceLen {
		return nil, ErrUnreadable
	}
	dk, err := k.aead.Open(nil, wrapped[:nonceLen], wrapped[nonceLen:], aad("codex-sealer v1 local wrap", b, nil))
	if err != nil || len(dk) != KeySize {
		return nil, ErrUnreadable
	}
	return dk, nil
}

// ParseKey decodes a 256-bit key written as 64 hex digits or base64
// (standard or URL alphabet, padded or not), ignoring surrounding
// whitespace. Errors never echo the input.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if len(s) == 2*KeySize {
		if b, err := hex.DecodeString(s); err == nil {
			return b, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			if len(b) == KeySize {
				return b, nil
			}
			clear(b)
		}
	}
	return nil, fmt.Errorf("not a 256-bit key as 64 hex digits or base64 (%d characters)", len(s))
}

// LoadKeyFile reads a key file (as ParseKey reads) and returns its
// LocalKey.
func LoadKeyFile(path string) (*LocalKey, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sealer: key file: %w", err)
	}
	defer clear(raw)
	key, err := ParseKey(string(raw))
	if err != nil {
		return nil, fmt.Errorf("sealer: key file %s: %w", path, err)
	}
	defer clear(key)
	return NewLocalKey(key)
}

// LoadOrCreateKeyFile is LoadKeyFile, creating the file (0600, a random
// key in hex) when absent. It refuses a file group or others can access.
func LoadOrCreateKeyFile(path string) (*LocalKey, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		if err := create(path); err != nil {
			return nil, fmt.Errorf("sealer: create key file: %w", err)
		}
		fi, err = os.Stat(path)
	}
	if err != nil {
		return nil, fmt.Errorf("sealer: key file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("sealer: key file %s has mode %v: group and others must have no access (chmod 600)", path, fi.Mode().Perm())
	}
	return LoadKeyFile(path)
}

func create(path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	key := make([]byte, KeySize)
	defer clear(key)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	text := []byte(hex.EncodeToString(key) + "\n")
	defer clear(text)
	tmp, err := os.CreateTemp(dir, ".secrets-key-*")
	if err != nil {
		return err
	}
	// After the link, the temporary name is only clutter.
	defer func() { _ = os.Remove(tmp.Name()) }()
	_, werr := tmp.Write(text)
	serr := tmp.Sync()
	cerr := tmp.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return err
	}
	// Linked, not renamed: a concurrent start-up either makes the file or
	// reads the winner's.
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return nil
}
