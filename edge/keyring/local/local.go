// Package local is a development master key: a random 256-bit key kept in
// a file of the data directory, created on first use. Anyone who can read
// the data directory can read everything the edge stored, so Open returns
// a warning that the caller must log at start-up.
package local

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/persiv/codex/edge/keyring"
	"github.com/persiv/codex/edge/keyring/internal/keywrap"
)

// Ref is the master key reference recorded with DEKs this package wraps.
const Ref = "local"

// FileName is the key file inside the data directory.
const FileName = "master.key"

// MasterKey implements keyring.MasterKey with the key file's key.
type MasterKey struct {
	*keywrap.Ring
	path string
}

var _ keyring.MasterKey = (*MasterKey)(nil)

// Warning is what the caller logs (at warn level or louder) whenever the
// local master key is in use.
func Warning(path string) string {
	return "CODEX_KEK=local: DEVELOPMENT ONLY. The master key is the file " + path +
		" next to the data it protects: anyone who can read the data directory can decrypt everything." +
		" Use CODEX_KEK=byok or CODEX_KEK=awskms:<key> in production."
}

// Open loads dataDir/master.key, creating it (mode 0600, directory 0700)
// when absent. It refuses a key file that group or others can access.
func Open(dataDir string) (m *MasterKey, warning string, err error) {
	if dataDir == "" {
		return nil, "", errors.New("local master key: empty data directory")
	}
	path := filepath.Join(dataDir, FileName)
	key, err := load(path)
	if errors.Is(err, fs.ErrNotExist) {
		key, err = create(dataDir, path)
	}
	if err != nil {
		return nil, "", fmt.Errorf("local master key: %w", err)
	}
	defer clear(key)
	r, err := keywrap.New(Ref, key)
	if err != nil {
		return nil, "", fmt.Errorf("local master key %s: %w", path, err)
	}
	return &MasterKey{Ring: r, path: path}, Warning(path), nil
}

// Path is the key file.
func (m *MasterKey) Path() string { return m.path }

// LogValue shows the file and version, never the key.
func (m *MasterKey) LogValue() slog.Value {
	return slog.GroupValue(slog.String("ref", Ref), slog.String("file", m.path), slog.Any("versions", m.Versions()))
}

func load(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s has mode %v: group and others must have no access (chmod 600)", path, fi.Mode().Perm())
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	defer clear(raw)
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil || len(key) != keywrap.KeySize {
		clear(key)
		return nil, fmt.Errorf("%s is not a base64 256-bit key", path)
	}
	return key, nil
}

func create(dataDir, path string) ([]byte, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, err
	}
	key := make([]byte, keywrap.KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	text := []byte(base64.StdEncoding.EncodeToString(key) + "\n")
	defer clear(text)
	// Write a temporary file, then link it into place: a concurrent
	// start-up either wins the link or reads the complete winner.
	tmp, err := os.CreateTemp(dataDir, ".master.key-*")
	if err != nil {
		clear(key)
		return nil, err
	}
	// After the link, the temporary name is only clutter.
	defer func() { _ = os.Remove(tmp.Name()) }()
	_, werr := tmp.Write(text)
	serr := tmp.Sync()
	cerr := tmp.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		clear(key)
		return nil, fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		clear(key)
		if errors.Is(err, fs.ErrExist) {
			return load(path)
		}
		return nil, err
	}
	return key, nil
}
