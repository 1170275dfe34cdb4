package dashboard

import (
	"context"
	"testing"
	"time"
)

// FuzzVerifySession: no input crashes the session parser or passes as a
// session without the signing key.
func FuzzVerifySession(f *testing.F) {
	// No store: a token that got past the signature check would reach it
	// and panic, failing the target.
	s := &Server{key: []byte("0123456789abcdef0123456789abcdef"), clock: time.Now}
	s.jwtKey = deriveKey(s.key, "codex-dashboard", "session-jwt")
	f.Add("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ1c3JfeCJ9.")
	f.Add("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJvcmciOiJvcmdfeCIsImVwb2NoIjowLCJpc3MiOiJjb2RleC1jb250cm9scGxhbmUiLCJzdWIiOiJ1c3JfeCIsImF1ZCI6WyJjb2RleC1kYXNoYm9hcmQiXSwiZXhwIjo5OTk5OTk5OTk5LCJqdGkiOiJ4In0.AAAA")
	f.Add("a.b.c")
	f.Add("")
	f.Fuzz(func(t *testing.T, raw string) {
		if _, err := s.verify(context.Background(), raw); err == nil {
			t.Fatalf("verify accepted %q", raw)
		}
	})
}

// FuzzInviteHash: only well-formed invitation tokens are looked up.
func FuzzInviteHash(f *testing.F) {
	tok, _ := newInviteToken()
	f.Add(tok)
	f.Add("cpinvite_")
	f.Add("../../etc/passwd")
	f.Fuzz(func(t *testing.T, s string) {
		h, ok := inviteHash(s)
		if ok != (len(s) == len(tok) && s[:len(InvitePrefix)] == InvitePrefix) {
			t.Fatalf("inviteHash(%q) ok = %v", s, ok)
		}
		if !ok && h != [32]byte{} {
			t.Fatal("a hash for a refused token")
		}
	})
}
