package dashboard

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/persiv/codex/controlplane"
	"github.com/persiv/codex/controlplane/sealer"
)

// Session JWT constants. Only HS256 is accepted: the key is a secret the
// control plane alone holds, so there is no public key to confuse it with.
const (
	Issuer     = "codex-controlplane"
	Audience   = "codex-dashboard"
	signMethod = "HS256"
	// KeyLen is the length of the session signing key.
	KeyLen = 32
)

// claims are a session's: the user, its org, and the user's session epoch
// when the session began.
type claims struct {
	OrgID string `json:"org"`
	Epoch int64  `json:"epoch"`
	jwt.RegisteredClaims
}

// session is a verified, current session.
type session struct {
	ID   string // jti; CSRF tokens are bound to it
	User controlplane.User
	Exp  time.Time
}

// deriveKey returns a subkey of key for one purpose (domain names whose
// key it is: customers' or staff's), so that the JWT key, CSRF tokens and
// the login form's token never share a key.
func deriveKey(key []byte, domain, purpose string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(domain + "/" + purpose))
	return m.Sum(nil)
}

func randomID() string {
	var b [18]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// issue signs a new session for u: a fresh id, so a login never keeps the
// session (or the CSRF token) the browser had before.
func (s *Server) issue(u controlplane.User) (string, time.Time, error) {
	now := s.now()
	exp := now.Add(s.ttl)
	c := claims{OrgID: u.OrgID, Epoch: u.SessionEpoch, RegisteredClaims: jwt.RegisteredClaims{
		Issuer: Issuer, Audience: jwt.ClaimStrings{Audience}, Subject: u.ID, ID: randomID(),
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(exp),
	}}
	tok, err := jwt.NewWithClaims(jwt.GetSigningMethod(signMethod), c).SignedString(s.jwtKey)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sign session: %w", err)
	}
	return tok, exp, nil
}

var errNoSession = errors.New("no valid session")

// verify checks a session token's signature and claims, then that the user
// still exists in the org and has not ended its sessions since.
func (s *Server) verify(ctx context.Context, raw string) (session, error) {
	var c claims
	_, err := jwt.ParseWithClaims(raw, &c, func(*jwt.Token) (any, error) { return s.jwtKey, nil },
		jwt.WithValidMethods([]string{signMethod}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithIssuer(Issuer),
		jwt.WithAudience(Audience),
		jwt.WithTimeFunc(s.now),
		jwt.WithStrictDecoding(),
	)
	if err != nil {
		return session{}, fmt.Errorf("%w: %v", errNoSession, err)
	}
	if c.Subject == "" || c.ID == "" || c.OrgID == "" {
		return session{}, fmt.Errorf("%w: missing claims", errNoSession)
	}
	u, err := s.store.User(ctx, c.OrgID, c.Subject)
	if errors.Is(err, controlplane.ErrNotFound) {
		return session{}, fmt.Errorf("%w: user removed", errNoSession)
	}
	if err != nil {
		return session{}, err
	}
	if u.SessionEpoch != c.Epoch {
		return session{}, fmt.Errorf("%w: sessions ended", errNoSession)
	}
	return session{ID: c.ID, User: u, Exp: c.ExpiresAt.Time}, nil
}

// csrfToken is the synchronizer token of a session under key (the
// customers' or the staff's CSRF key): a MAC of its id, so it is worthless
// with any other session and needs no storage.
func csrfToken(key []byte, sessionID string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(sessionID))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func csrfValid(key []byte, sessionID, got string) bool {
	return got != "" && hmac.Equal([]byte(got), []byte(csrfToken(key, sessionID)))
}

// SecretStore keeps the deployment's sealed secrets (controlplane.Store).
type SecretStore interface {
	DeploymentSecret(ctx context.Context, name string) ([]byte, error)
	AddDeploymentSecret(ctx context.Context, name string, sealed []byte) ([]byte, error)
}

// secretPurpose binds a sealed deployment secret to its use.
const secretPurpose = "deployment-secret"

// SharedKey returns the session signing key called name that every
// instance of the control plane shares: kept in the store, sealed by s
// (bound to the name), made on first use. Instances starting at once all
// end up with the one stored first. A key file of an earlier version at
// legacyPath (if any) becomes the stored key, so that sessions begun before
// the upgrade stay valid.
func SharedKey(ctx context.Context, st SecretStore, s *sealer.Sealer, name, legacyPath string) ([]byte, error) {
	b := sealer.Binding{Purpose: secretPurpose, Name: name}
	sealed, err := st.DeploymentSecret(ctx, name)
	if errors.Is(err, controlplane.ErrNotFound) {
		key, lerr := legacyKey(legacyPath)
		if lerr != nil {
			return nil, lerr
		}
		defer clear(key)
		fresh, serr := s.Seal(ctx, b, key)
		if serr != nil {
			return nil, fmt.Errorf("session key %s: %w", name, serr)
		}
		sealed, err = st.AddDeploymentSecret(ctx, name, fresh)
	}
	if err != nil {
		return nil, fmt.Errorf("session key %s: %w", name, err)
	}
	key, err := s.Open(ctx, b, sealed)
	if err != nil {
		return nil, fmt.Errorf("session key %s: %w", name, err)
	}
	if len(key) != KeyLen {
		return nil, fmt.Errorf("session key %s: %d bytes, want %d", name, len(key), KeyLen)
	}
	return key, nil
}

// legacyKey is the key in the file at path, or a fresh random key when
// there is none.
func legacyKey(path string) ([]byte, error) {
	key, err := os.ReadFile(path)
	switch {
	case err == nil && len(key) == KeyLen:
		return key, nil
	case err == nil:
		return nil, fmt.Errorf("session key %s: %d bytes, want %d", path, len(key), KeyLen)
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("session key: %w", err)
	}
	key = make([]byte, KeyLen)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("session key: %w", err)
	}
	return key, nil
}
