package totp_test

import (
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/pquerna/otp"
	pqtotp "github.com/pquerna/otp/totp"

	"github.com/persiv/codex/controlplane/totp"
)

func TestNewURI(t *testing.T) {
	secret, uri, err := totp.New("ops@persiv.example")
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "otpauth" || u.Host != "totp" || u.Query().Get("secret") != secret ||
		u.Query().Get("issuer") != totp.Issuer || u.Query().Get("digits") != "6" || u.Query().Get("period") != "30" {
		t.Fatalf("uri %q (%v)", uri, err)
	}
	k, err := otp.NewKeyFromURL(uri)
	if err != nil || k.AccountName() != "ops@persiv.example" {
		t.Fatalf("key %+v, %v", k, err)
	}
}

// TestCheck: a code verifies within one step either side, and Check
// returns its step; what an authenticator app computes (pquerna/otp's
// own totp.GenerateCode) is accepted.
func TestCheck(t *testing.T) {
	secret, _, err := totp.New("ops@persiv.example")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 3, 1, 12, 0, 15, 0, time.UTC)
	app, err := pqtotp.GenerateCode(secret, now)
	if err != nil {
		t.Fatal(err)
	}
	if step, err := totp.Check(secret, app, now); err != nil || step != totp.Step(now) {
		t.Fatalf("app's code: step %d, %v", step, err)
	}
	for _, tc := range []struct {
		offset int64
		ok     bool
	}{{-2, false}, {-1, true}, {0, true}, {1, true}, {2, false}} {
		code, err := totp.Code(secret, totp.Step(now)+tc.offset)
		if err != nil {
			t.Fatal(err)
		}
		step, err := totp.Check(secret, code, now)
		if tc.ok && (err != nil || step != totp.Step(now)+tc.offset) {
			t.Errorf("code of step %+d: step %d, %v", tc.offset, step, err)
		}
		if !tc.ok && !errors.Is(err, totp.ErrInvalid) {
			t.Errorf("code of step %+d: %v, want ErrInvalid", tc.offset, err)
		}
	}
	for _, bad := range []string{"", "12345", "1234567", "abcdef"} {
		if _, err := totp.Check(secret, bad, now); !errors.Is(err, totp.ErrInvalid) {
			t.Errorf("code %q: %v", bad, err)
		}
	}
}
