package keyring

import (
	"context"
	"fmt"
	"log/slog"
)

// DEKSize is the length of a data key in bytes (AES-256).
const DEKSize = 32

// Binding is what a wrapped DEK is bound to: a provider must refuse to
// unwrap it under any other binding (AWS KMS through the encryption context
// {"org_id": OrgID}, the AES-GCM wrapping of byok and local through its
// associated data, which also covers the DEK id).
type Binding struct {
	OrgID string
	DEKID DEKID
}

// Wrap is a DEK as wrapped by a master key. Ref names the provider
// ("awskms", "byok", "local"), Version the exact key that wrapped it (a KMS
// key ARN, a fingerprint of a BYOK key); neither is secret.
type Wrap struct {
	Ref     string
	Version string
	Blob    []byte
}

// LogValue prints the reference and version, never the blob.
func (w Wrap) LogValue() slog.Value {
	return slog.GroupValue(slog.String("ref", w.Ref), slog.String("version", w.Version), slog.Int("bytes", len(w.Blob)))
}

// MasterKey wraps and unwraps DEKs. Implementations: packages awskms, byok
// and local. Errors that mean "this wrapped DEK cannot be opened with what
// I hold" (key revoked, disabled, version removed, authentication failed)
// wrap ErrUnreadable; any other error is an infrastructure failure.
// Implementations must be safe for concurrent use.
type MasterKey interface {
	// Ref names the provider; it is recorded with every wrapped DEK.
	Ref() string
	// Generate returns a fresh DEKSize-byte DEK and its wrapped form under
	// the current version. The caller clears the DEK after use.
	Generate(ctx context.Context, b Binding) (dek []byte, w Wrap, err error)
	// Wrap wraps an existing DEK under the current version (rewrap from
	// another provider).
	Wrap(ctx context.Context, b Binding, dek []byte) (Wrap, error)
	// Unwrap returns the DEK inside w, whatever version of this provider
	// wrapped it, as long as that version is still held.
	Unwrap(ctx context.Context, b Binding, w Wrap) ([]byte, error)
	// Current reports whether w is wrapped by the current version, so that
	// rewrap can leave it alone.
	Current(ctx context.Context, w Wrap) (bool, error)
}

// Rewrapper is implemented by master keys that re-wrap without exposing
// the DEK to the process (AWS KMS ReEncrypt). The keyring prefers it over
// Unwrap+Wrap when the DEK stays with the same provider.
type Rewrapper interface {
	Rewrap(ctx context.Context, b Binding, w Wrap) (Wrap, error)
}

// Prober is implemented by master keys that can tell, with one cheap call
// and no data key, whether they can still unwrap. Keyring.Watch uses it so
// that a master key revoked out of band (a KMS key disabled, scheduled for
// deletion, or our access to it removed) stops the data keys it unwrapped
// within Options.ProbeInterval rather than Options.KeyLifetime.
type Prober interface {
	// Probe returns nil while the key can unwrap, an error wrapping
	// ErrUnreadable when the provider definitively refuses (key disabled,
	// pending deletion, deleted, access denied), and any other error when
	// it could not tell (network, throttling, timeout): the keyring drops
	// its unwrapped keys on the first and keeps them on the second.
	Probe(ctx context.Context) error
}

// Unavailable returns a master key named ref that refuses every operation
// with ErrUnreadable. OrgMaster returns it for an org that brought its own
// key when that key has not been supplied since start-up: the org's data
// stays unreadable and nothing new is sealed under the edge's default key
// instead of the org's own.
func Unavailable(ref string) MasterKey { return unavailable(ref) }

type unavailable string

func (u unavailable) Ref() string { return string(u) }

func (u unavailable) err() error {
	return fmt.Errorf("%w: the org's master key %q has not been supplied", ErrUnreadable, string(u))
}

func (u unavailable) Generate(context.Context, Binding) ([]byte, Wrap, error) {
	return nil, Wrap{}, u.err()
}

func (u unavailable) Wrap(context.Context, Binding, []byte) (Wrap, error) { return Wrap{}, u.err() }

func (u unavailable) Unwrap(context.Context, Binding, Wrap) ([]byte, error) { return nil, u.err() }

func (u unavailable) Current(context.Context, Wrap) (bool, error) { return false, nil }
