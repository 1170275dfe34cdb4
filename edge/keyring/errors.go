package keyring

import "errors"

// ErrUnreadable means the data cannot be decrypted and never will be with
// the keys this process has: the org was shredded, its master key (version)
// was revoked or removed, the ciphertext was tampered with or moved to
// another org, purpose or record. Callers treat such data as absent (a
// cache miss, a credential that must be set again), never as a server error.
// A Prober's error wraps it when the provider refuses the master key.
//
// Every other error from Seal and Open is an infrastructure failure (store
// or KMS unreachable, throttled) that may succeed when retried.
var ErrUnreadable = errors.New("keyring: unreadable")

// ErrInvalidInput marks a programming error by the caller: an empty org id,
// an unknown purpose.
var ErrInvalidInput = errors.New("keyring: invalid input")
