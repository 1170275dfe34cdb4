// Package totp issues and checks the staff's second factor: RFC 6238
// time-based one-time codes (SHA-1, 6 digits, 30-second steps, the
// parameters every authenticator app supports), using
// github.com/pquerna/otp.
//
// Check returns the time step a code belongs to, so that the caller can
// refuse a code of a step it has seen (controlplane.StaffStore's
// UseTOTPStep): within its window a code works once.
package totp

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
	"github.com/pquerna/otp/totp"
)

// Parameters of every code.
const (
	// Period is a time step.
	Period = 30 * time.Second
	// Skew is how many steps before or after the current one a code may
	// be from: clocks differ, and typing takes time.
	Skew = 1
	// Digits is a code's length.
	Digits = 6
	// Issuer names the account in authenticator apps.
	Issuer = "persiv codex staff"
)

// ErrInvalid is a wrong code, or one outside the window.
var ErrInvalid = errors.New("invalid code")

// New makes a secret for account (an email) and returns it (base32, as
// the URI carries it) with its otpauth:// URI, to be shown once.
func New(account string) (secret, uri string, err error) {
	k, err := totp.Generate(totp.GenerateOpts{Issuer: Issuer, AccountName: account, Period: uint(Period / time.Second),
		Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		return "", "", fmt.Errorf("totp: %w", err)
	}
	return k.Secret(), k.URL(), nil
}

// Step is the time step of t.
func Step(t time.Time) int64 { return t.Unix() / int64(Period/time.Second) }

// Code returns the code of step (for tests and tools).
func Code(secret string, step int64) (string, error) {
	return hotp.GenerateCodeCustom(secret, uint64(step), hotp.ValidateOpts{Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
}

// Check returns the step within Skew of now's whose code is code, or
// ErrInvalid. Every candidate is compared, in constant time, so the time
// taken does not tell which step matched.
func Check(secret, code string, now time.Time) (int64, error) {
	if len(code) != Digits {
		return 0, ErrInvalid
	}
	cur := Step(now)
	var match int64 = -1
	for s := cur - Skew; s <= cur+Skew; s++ {
		want, err := Code(secret, s)
		if err != nil {
			return 0, fmt.Errorf("totp: %w", err)
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 && match < 0 {
			match = s
		}
	}
	if match < 0 {
		return 0, ErrInvalid
	}
	return match, nil
}
