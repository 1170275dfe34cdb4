package apikey

import (
	"crypto/rand"
	"strings"
	"sync"
	"time"
)

// IDLen is the number of random base62 characters in an id made by NewID:
// 20 characters hold about 119 bits, so ids never collide in practice and
// cannot be guessed.
const IDLen = 20

// randBatch is a block of crypto/rand output consumed a few bytes at a
// time. Request ids are made on every request; one 4 KiB getrandom call
// serves about 190 of them, which costs far less than a call per id (see
// BenchmarkNewID and BenchmarkNewIDUnbatched).
type randBatch struct {
	off int
	buf [4096]byte
}

var batches = sync.Pool{New: func() any { return &randBatch{off: 4096} }}

// NewID returns prefix followed by IDLen random base62 characters, e.g.
// NewID("key_"), NewID("org_"), NewID("req_"). Ids are identifiers, not
// secrets, but they are drawn from crypto/rand all the same. It is safe for
// concurrent use and allocates only the returned string.
func NewID(prefix string) string {
	var b [64]byte
	out := b[:0]
	if len(prefix)+IDLen > len(b) {
		out = make([]byte, 0, len(prefix)+IDLen)
	}
	out = append(out, prefix...)
	return string(appendRandom(out, IDLen))
}

// timeChars is how many of a NewTimeID's characters hold its time: 62^8
// milliseconds reach past the year 8000.
const timeChars = 8

// NewTimeID returns an id like NewID's, of the same length and alphabet,
// whose first characters encode t to the millisecond, so ids sort by
// creation time as strings. Stores that index request ids then append to
// the index's end instead of touching a random page per row. The other 12
// characters are random (about 71 bits: unique within a millisecond).
func NewTimeID(prefix string, t time.Time) string {
	var b [64]byte
	out := b[:0]
	if len(prefix)+IDLen > len(b) {
		out = make([]byte, 0, len(prefix)+IDLen)
	}
	out = append(out, prefix...)
	ms := max(t.UnixMilli(), 0)
	var enc [timeChars]byte
	for i := timeChars - 1; i >= 0; i-- {
		enc[i] = alphabet[ms%62]
		ms /= 62
	}
	out = append(out, enc[:]...)
	return string(appendRandom(out, IDLen-timeChars))
}

// appendRandom appends n random base62 characters to out.
func appendRandom(out []byte, n int) []byte {
	r := batches.Get().(*randBatch)
	off := r.off
	for n > 0 {
		if off == len(r.buf) {
			// crypto/rand.Read never fails and always fills the buffer.
			rand.Read(r.buf[:])
			off = 0
		}
		c := r.buf[off]
		off++
		if c < maxUnbiased {
			out = append(out, alphabet[c%62])
			n--
		}
	}
	r.off = off
	batches.Put(r)
	return out
}

// FromHeader extracts the credential a request presents, given the values
// of its Authorization and x-api-key headers. Authorization counts only with
// the Bearer scheme (matched case-insensitively); surrounding spaces and
// tabs are ignored. Both headers are accepted because current SDKs send
// either. A request presenting two different credentials is refused rather
// than guessing which one the client meant; the same credential in both is
// accepted. The result still has to go through Parse.
func FromHeader(authorization, xAPIKey string) (string, bool) {
	bearer, hasBearer := bearerToken(authorization)
	key := trimOWS(xAPIKey)
	switch {
	case hasBearer && key != "":
		if bearer != key {
			return "", false
		}
		return bearer, true
	case hasBearer:
		return bearer, true
	case key != "":
		return key, true
	}
	return "", false
}

// bearerToken returns the token of an "Authorization: Bearer <token>"
// value (RFC 9110 §11.6.2, RFC 6750 §2.1).
func bearerToken(v string) (string, bool) {
	const scheme = "Bearer"
	v = trimOWS(v)
	if len(v) <= len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) {
		return "", false
	}
	if c := v[len(scheme)]; c != ' ' && c != '\t' {
		return "", false
	}
	tok := trimOWS(v[len(scheme)+1:])
	return tok, tok != ""
}

// trimOWS trims HTTP optional whitespace (spaces and tabs).
func trimOWS(s string) string {
	return strings.Trim(s, " \t")
}
