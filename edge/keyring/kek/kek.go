// Package kek reads CODEX_KEK, the edge's default master key, and builds
// the matching keyring.MasterKey: "local" (development), "byok" (the
// customer's key from CODEX_BYOK_KEY or CODEX_BYOK_KEY_FILE) or
// "awskms:<key-id-or-arn>".
package kek

import (
	"context"
	"fmt"
	"strings"

	"github.com/persiv/codex/edge/keyring"
	"github.com/persiv/codex/edge/keyring/awskms"
	"github.com/persiv/codex/edge/keyring/byok"
	"github.com/persiv/codex/edge/keyring/local"
)

// Env is the variable Parse's input comes from.
const Env = "CODEX_KEK"

// Kind is a master key provider.
type Kind string

const (
	Local  Kind = "local"
	BYOK   Kind = "byok"
	AWSKMS Kind = "awskms"
)

// Spec is a parsed CODEX_KEK.
type Spec struct {
	Kind  Kind
	KeyID string // AWSKMS only
}

// String returns the CODEX_KEK form.
func (s Spec) String() string {
	if s.Kind == AWSKMS {
		return string(AWSKMS) + ":" + s.KeyID
	}
	return string(s.Kind)
}

// Parse parses a CODEX_KEK value. Empty means local, the default.
// Surrounding whitespace is ignored; the kind is case-insensitive.
func Parse(s string) (Spec, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Spec{Kind: Local}, nil
	}
	kind, arg, hasArg := strings.Cut(s, ":")
	switch Kind(strings.ToLower(kind)) {
	case Local:
		if hasArg {
			return Spec{}, fmt.Errorf("%s: local takes no argument", Env)
		}
		return Spec{Kind: Local}, nil
	case BYOK:
		if hasArg {
			return Spec{}, fmt.Errorf("%s: byok takes no argument: the key comes from %s or %s", Env, byok.EnvKey, byok.EnvKeyFile)
		}
		return Spec{Kind: BYOK}, nil
	case AWSKMS:
		if err := awskms.ValidKeyID(arg); err != nil {
			return Spec{}, fmt.Errorf("%s: %w", Env, err)
		}
		return Spec{Kind: AWSKMS, KeyID: arg}, nil
	}
	return Spec{}, fmt.Errorf("%s: %q is not local, byok or awskms:<key-id-or-arn>", Env, s)
}

// Open builds the master key s names. getenv reads the BYOK variables
// (os.Getenv in production); dataDir holds the local key file. warning,
// when not empty, must be logged loudly at start-up. Open makes no KMS
// call, so a disabled KMS key does not stop start-up; a malformed key does.
func Open(ctx context.Context, s Spec, getenv func(string) string, dataDir string) (m keyring.MasterKey, warning string, err error) {
	switch s.Kind {
	case Local:
		lm, w, err := local.Open(dataDir)
		if err != nil {
			return nil, "", err
		}
		return lm, w, nil
	case BYOK:
		bm, err := byok.FromEnv(getenv)
		if err != nil {
			return nil, "", err
		}
		return bm, "", nil
	case AWSKMS:
		km, err := awskms.Open(ctx, s.KeyID)
		if err != nil {
			return nil, "", err
		}
		return km, "", nil
	}
	return nil, "", fmt.Errorf("%s: unknown kind %q", Env, s.Kind)
}

// FromEnv parses CODEX_KEK from getenv and opens it.
func FromEnv(ctx context.Context, getenv func(string) string, dataDir string) (keyring.MasterKey, string, error) {
	s, err := Parse(getenv(Env))
	if err != nil {
		return nil, "", err
	}
	return Open(ctx, s, getenv, dataDir)
}
