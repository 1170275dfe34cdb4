// Package memory manages memories (DESIGN §10): named, versioned text
// blocks of an org or of one of its keys, which the edge injects into
// requests as the provider's own system instruction. Service sets, lists,
// shows and removes them for the CLI and the admin API; the text is sealed
// by the org's data key (purpose memory) before it reaches the store. The
// request path reads memories from the key directory, which holds them
// opened in memory.
package memory

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/keyring"
)

// Header is the request header that turns injection off ("off") and the
// response header that names the memories a request carried
// (name@version[,…]).
const Header = "X-Codex-Memory"

// Store is the part of edge.Store that keeps memories.
type Store interface {
	PutMemory(ctx context.Context, m edge.Memory) error
	Memory(ctx context.Context, orgID, keyID, name string) (edge.Memory, error)
	Memories(ctx context.Context, orgID string) ([]edge.Memory, error)
	RemoveMemory(ctx context.Context, orgID, keyID, name string, at time.Time) error
}

// Sealer seals and opens an org's secrets (the keyring).
type Sealer interface {
	Seal(ctx context.Context, orgID string, p keyring.Purpose, recordKey string, plaintext []byte) ([]byte, error)
	Open(ctx context.Context, orgID string, p keyring.Purpose, recordKey string, ciphertext []byte) ([]byte, error)
}

// Service manages memories in a store.
type Service struct {
	Store Store
	Keys  Sealer
}

// Info is what may be shown of a memory: never its text. Its JSON is the
// shape of `memory list --json` (DESIGN §10).
type Info struct {
	Name    string `json:"name"`
	KeyID   string `json:"key_id"`
	Version int64  `json:"version"`
	Bytes   int64  `json:"bytes"`
	// Tokens is an estimate (EstimateTokens), not a provider's count.
	Tokens int64 `json:"tokens"`
}

// InfoOf is what may be shown of m.
func InfoOf(m edge.Memory) Info {
	return Info{Name: m.Name, KeyID: m.KeyID, Version: m.Version, Bytes: m.Bytes, Tokens: m.Tokens}
}

// ErrUnreadable means a memory's text can no longer be opened: its org's
// data keys were shredded or its master key revoked. Setting it again
// makes it usable.
var ErrUnreadable = errors.New("the memory's text is unreadable (its org's data keys were shredded or the master key revoked); set it again")

// setAttempts bounds how often Set retries when another set of the same
// memory came first.
const setAttempts = 5

// Set stores text as the next version of the memory name of the org, or
// of its key keyID when that is not empty, and returns what was stored.
func (s Service) Set(ctx context.Context, orgID, keyID, name string, text []byte) (Info, error) {
	if err := edge.CheckMemoryName(name); err != nil {
		return Info{}, err
	}
	if err := CheckText(text); err != nil {
		return Info{}, err
	}
	for range setAttempts {
		cur, err := s.Store.Memory(ctx, orgID, keyID, name)
		if err != nil && !errors.Is(err, edge.ErrNotFound) {
			return Info{}, err
		}
		m := edge.Memory{OrgID: orgID, KeyID: keyID, Name: name, Version: cur.Version + 1,
			Bytes: int64(len(text)), Tokens: EstimateTokens(text), UpdatedAt: time.Now().UTC()}
		// The version is bound into the ciphertext, so it is chosen first;
		// a set that came first meanwhile makes the store refuse this one.
		if m.Sealed, err = s.Keys.Seal(ctx, orgID, keyring.PurposeMemory, edge.MemoryRecord(keyID, name, m.Version), text); err != nil {
			return Info{}, fmt.Errorf("seal memory %q: %w", name, err)
		}
		err = s.Store.PutMemory(ctx, m)
		if errors.Is(err, edge.ErrConflict) {
			continue
		}
		if err != nil {
			return Info{}, err
		}
		return InfoOf(m), nil
	}
	return Info{}, fmt.Errorf("memory %q keeps being set by others: %w", name, edge.ErrConflict)
}

// List returns what may be shown of the org's memories, its own first,
// then its keys', by name.
func (s Service) List(ctx context.Context, orgID string) ([]Info, error) {
	ms, err := s.Store.Memories(ctx, orgID)
	if err != nil {
		return nil, err
	}
	out := make([]Info, len(ms))
	for i, m := range ms {
		out[i] = InfoOf(m)
	}
	return out, nil
}

// Show returns a memory's text and what may be shown of it.
func (s Service) Show(ctx context.Context, orgID, keyID, name string) ([]byte, Info, error) {
	m, err := s.Store.Memory(ctx, orgID, keyID, name)
	if err != nil {
		return nil, Info{}, err
	}
	if m.Sealed == nil {
		return nil, Info{}, fmt.Errorf("memory %q was removed: %w", name, edge.ErrNotFound)
	}
	text, err := Open(ctx, s.Keys, m)
	if err != nil {
		return nil, Info{}, err
	}
	return text, InfoOf(m), nil
}

// Remove removes a memory: it is no longer injected; its version is kept
// so that a later set follows on.
func (s Service) Remove(ctx context.Context, orgID, keyID, name string) error {
	return s.Store.RemoveMemory(ctx, orgID, keyID, name, time.Now().UTC())
}

// Open opens a stored memory's text: ErrUnreadable (with the keyring's
// error) when its data key is gone.
func Open(ctx context.Context, keys Sealer, m edge.Memory) ([]byte, error) {
	text, err := keys.Open(ctx, m.OrgID, keyring.PurposeMemory, edge.MemoryRecord(m.KeyID, m.Name, m.Version), m.Sealed)
	if errors.Is(err, keyring.ErrUnreadable) {
		return nil, fmt.Errorf("memory %q: %w: %w", m.Name, ErrUnreadable, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open memory %q: %w", m.Name, err)
	}
	return text, nil
}

// CheckText accepts UTF-8 text with something besides white space, at
// most edge.MaxMemoryBytes long.
func CheckText(text []byte) error {
	switch {
	case len(text) > edge.MaxMemoryBytes:
		return fmt.Errorf("memory text is %d bytes, more than the %d allowed: %w", len(text), edge.MaxMemoryBytes, edge.ErrInvalid)
	case strings.TrimSpace(string(text)) == "":
		return fmt.Errorf("memory text is empty: %w", edge.ErrInvalid)
	case !utf8.Valid(text):
		return fmt.Errorf("memory text is not UTF-8: %w", edge.ErrInvalid)
	}
	return nil
}

// EstimateTokens estimates how many tokens a provider's tokenizer makes
// of text, without one: a token per four bytes of ASCII (English prose
// and code average about that with OpenAI's and Anthropic's tokenizers)
// and one per other character. It is labelled an estimate wherever it is
// shown or recorded.
func EstimateTokens(text []byte) int64 {
	var ascii, other int64
	for i := 0; i < len(text); {
		if text[i] < utf8.RuneSelf {
			ascii++
			i++
			continue
		}
		_, n := utf8.DecodeRune(text[i:])
		other++
		i += n
	}
	return (ascii+3)/4 + other
}
