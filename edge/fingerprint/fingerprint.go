// Package fingerprint validates API request bodies and computes their
// request fingerprint: an HMAC-SHA256, under a per-org secret, of the
// request's canonical form. Two requests that would get the same answer
// from the provider get the same fingerprint however their JSON is spelled;
// the fingerprint reveals repetition within an org and nothing else.
//
// # What is authenticated
//
// The MAC input is, in order: the domain string "codex-fingerprint-v1" and a
// zero byte; the provider and the endpoint, each as a uvarint length and its
// bytes; when SumWith is given extra bytes (something outside the body that
// changes the answer, such as the digest of text the edge injects), the
// byte 0x01, their uvarint length and the bytes; then the canonical form of
// the body with the top-level fields in ExcludedFields left out (what
// Canonical returns). A canonical body starts with '{', never 0x01, so a
// sum with extra bytes never equals one without.
//
// # Canonical form
//
// The body must be a single JSON object (RFC 8259) with some stricter rules,
// each of which would otherwise make "the same request" ambiguous: strings
// are valid UTF-8 with no lone surrogate escapes (I-JSON, RFC 7493), no
// object has two keys that decode to the same string, nesting is at most
// MaxDepth deep, an exponent has at most 9 digits, and a body holds at most
// MaxIndexed objects and members together. Its canonical form:
//
//   - no whitespace between tokens;
//   - object members sorted by the bytes of their decoded UTF-8 keys (the
//     order of array elements is kept: it is meaningful);
//   - strings escaped as in RFC 8785 (JCS): only '"', '\\' and control
//     characters are escaped, everything else is written as UTF-8;
//   - numbers as their exact decimal value, in the layout below; so 1, 1.0,
//     1e0 and 10e-1 are all 1, while no digit of a long literal is lost.
//
// A number is laid out as RFC 8785 lays out a double (ECMAScript's
// Number::toString), but from the literal's own digits. With s the
// significant digits (no leading or trailing zeros), k their count and n
// such that the value is 0.s × 10^n:
//
//	k ≤ n ≤ 21    s, then n−k zeros           1e20 → 100000000000000000000
//	0 < n < k     s with a point after n      1.50 → 1.5
//	−6 < n ≤ 0    "0.", −n zeros, then s      1e-3 → 0.001
//	otherwise     d[.ddd]e±(n−1)              1e21 → 1e+21, 0.00000015 → 1.5e-7
//
// with "-" before negative values; zero is 0 whatever its sign or spelling.
//
// This differs from RFC 8785 in two ways: keys are ordered by UTF-8 bytes,
// not UTF-16 code units (the same order unless keys mix characters above
// U+FFFF with ones from U+E000 to U+FFFF), and numbers keep their exact
// value, where JCS goes through float64 and would silently merge distinct
// big integers such as 9007199254740992 and 9007199254740993.
//
// # Cost
//
// Validation and field extraction are one pass over the body, which also
// indexes its objects' members (12 bytes each) in sorted order. Sum then
// streams the canonical form into the HMAC straight from the body's bytes,
// through a 4 KiB buffer: the canonical document is never built. All
// working memory is pooled; a Sum allocates only Info.Model.
package fingerprint

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"math"
	"strconv"
	"sync"
)

// ExcludedFields are the top-level fields left out of the fingerprint
// because they change how an answer is delivered or attributed, not the
// answer itself: streaming, end-user ids, provider-side cache routing and
// storage, and free-form metadata. Everything else counts, nested fields
// and array order included. Treat it as read-only: changing it changes
// every fingerprint.
var ExcludedFields = [...]string{
	"stream",
	"stream_options",
	"user",
	"safety_identifier",
	"prompt_cache_key",
	"metadata",
	"store",
}

func excluded(key []byte) bool {
	for _, f := range ExcludedFields {
		if string(key) == f {
			return true
		}
	}
	return false
}

// extraMark introduces SumWith's extra bytes in the MAC input.
const extraMark = 0x01

// domain separates this MAC from any other use of the org's secret and
// names the canonicalisation version.
const domain = "codex-fingerprint-v1\x00"

// Info is what the edge needs to know about a request body.
type Info struct {
	Model            string // top-level "model"; "" when absent or null
	Stream           bool   // top-level "stream" is true
	HasStreamOptions bool   // top-level "stream_options" is an object
	IncludeUsage     bool   // "stream_options": {"include_usage": true}
	// MaxOutputTokens is the request's own cap on output tokens, 0 when it
	// sets none: the largest positive number among top-level max_tokens,
	// max_completion_tokens and max_output_tokens, rounded up, at most
	// 2^40. Read here so that the budget need not parse the body again.
	MaxOutputTokens int64
}

// Sum is a request fingerprint.
type Sum [32]byte

// String returns the fingerprint in lower-case hex.
func (s Sum) String() string { return hex.EncodeToString(s[:]) }

var parsers = sync.Pool{New: func() any { return new(parser) }}

func getParser() *parser { return parsers.Get().(*parser) }

func putParser(p *parser) {
	p.release()
	parsers.Put(p)
}

// Scan validates body and extracts Info, without fingerprinting it.
func Scan(body []byte) (Info, error) {
	p := getParser()
	defer putParser(p)
	if err := p.parse(body); err != nil {
		return Info{}, err
	}
	return p.info()
}

// Canonical returns the canonical form of body, minus the excluded
// top-level fields: exactly the bytes Sum authenticates after the provider
// and endpoint. It is meant for tests and debugging; Sum does not build it.
func Canonical(body []byte) ([]byte, error) {
	p := getParser()
	defer putParser(p)
	if err := p.parse(body); err != nil {
		return nil, err
	}
	if _, err := p.info(); err != nil {
		return nil, err
	}
	w := sink{buf: make([]byte, 0, stageSize), out: make([]byte, 0, len(body))}
	e := emitter{p: p, w: &w}
	e.emit()
	w.flush()
	return w.out, nil
}

// MinSecretLen is the shortest secret New accepts. Secrets are meant to be
// 32 random bytes.
const MinSecretLen = 16

// Fingerprinter computes the fingerprints of one org. It is safe for
// concurrent use; build one per org and keep it.
type Fingerprinter struct {
	key   []byte
	macs  sync.Pool // of *macState
	plain sync.Pool // of hash.Hash: MAC's
}

type macState struct {
	mac  hash.Hash
	w    sink
	sum  [sha256.Size]byte
	vbuf [binary.MaxVarintLen64]byte
}

// New returns a Fingerprinter keyed with secret, which it copies. It panics
// if the secret is shorter than MinSecretLen: a missing or truncated secret
// would make fingerprints comparable across orgs, and must never be used
// quietly.
func New(secret []byte) *Fingerprinter {
	if len(secret) < MinSecretLen {
		panic("fingerprint: secret shorter than MinSecretLen")
	}
	key := append([]byte(nil), secret...)
	f := &Fingerprinter{key: key}
	f.macs.New = func() any {
		st := &macState{mac: hmac.New(sha256.New, key)}
		st.w = sink{h: st.mac, buf: make([]byte, 0, stageSize)}
		return st
	}
	return f
}

// MAC returns an HMAC-SHA-256 under the org's secret, reset, for the other
// digests the edge keeps of an org's content (the audit log's); PutMAC
// gives it back for reuse. The caller writes a domain string of its own
// first, so that no such digest can equal a fingerprint, whose input
// starts with "codex-fingerprint-v1".
func (f *Fingerprinter) MAC() hash.Hash {
	if h, ok := f.plain.Get().(hash.Hash); ok {
		h.Reset()
		return h
	}
	return hmac.New(sha256.New, f.key)
}

// PutMAC returns a MAC for reuse; h must not be used afterwards.
func (f *Fingerprinter) PutMAC(h hash.Hash) { f.plain.Put(h) }

// Sum validates body, extracts its Info and returns its fingerprint for the
// given provider and endpoint (e.g. "openai", "chat.completions").
func (f *Fingerprinter) Sum(provider, endpoint string, body []byte) (Sum, Info, error) {
	return f.SumWith(provider, endpoint, nil, body)
}

// SumWith is Sum with extra bytes authenticated before the body: what,
// besides the body, changes the answer (the edge passes the digest of the
// memories it injects, so that hashing them costs 32 bytes, not their
// length). Empty extra is Sum.
func (f *Fingerprinter) SumWith(provider, endpoint string, extra, body []byte) (Sum, Info, error) {
	p := getParser()
	defer putParser(p)
	if err := p.parse(body); err != nil {
		return Sum{}, Info{}, err
	}
	info, err := p.info()
	if err != nil {
		return Sum{}, Info{}, err
	}

	st := f.macs.Get().(*macState)
	defer f.macs.Put(st)
	st.mac.Reset()
	st.w.buf = st.w.buf[:0]
	st.w.writeString(domain)
	st.w.write(binary.AppendUvarint(st.vbuf[:0], uint64(len(provider))))
	st.w.writeString(provider)
	st.w.write(binary.AppendUvarint(st.vbuf[:0], uint64(len(endpoint))))
	st.w.writeString(endpoint)
	if len(extra) > 0 {
		st.w.writeByte(extraMark)
		st.w.write(binary.AppendUvarint(st.vbuf[:0], uint64(len(extra))))
		st.w.write(extra)
	}
	e := emitter{p: p, w: &st.w}
	e.emit()
	st.w.flush()
	var s Sum
	copy(s[:], st.mac.Sum(st.sum[:0]))
	return s, info, nil
}

// info extracts Info from a parsed body. A "model" that is not a string
// and a "stream" that is not a boolean are errors (null counts as absent):
// the edge decides on them, so it must not guess.
func (p *parser) info() (Info, error) {
	var info Info
	root := p.objects[0]
	for k := root.first; k < root.first+root.n; k++ {
		m := &p.members[k]
		v := int(m.val)
		switch string(p.key(m)) {
		case "model":
			switch p.body[v] {
			case '"':
				end, esc, _ := p.str(v)
				content := p.body[v+1 : end-1]
				if esc {
					info.Model = string(appendDecoded(nil, content))
				} else {
					info.Model = string(content)
				}
			case 'n':
			default:
				return Info{}, errAt(v, `"model" is not a string`)
			}
		case "stream":
			switch p.body[v] {
			case 't':
				info.Stream = true
			case 'f', 'n':
			default:
				return Info{}, errAt(v, `"stream" is not a boolean`)
			}
		case "max_tokens", "max_completion_tokens", "max_output_tokens":
			info.MaxOutputTokens = max(info.MaxOutputTokens, p.tokenCap(v))
		case "stream_options":
			if p.body[v] != '{' {
				continue
			}
			info.HasStreamOptions = true
			o := p.objects[p.objectAt(v)]
			for j := o.first; j < o.first+o.n; j++ {
				if string(p.key(&p.members[j])) == "include_usage" {
					info.IncludeUsage = p.body[p.members[j].val] == 't'
				}
			}
		}
	}
	return info, nil
}

// tokenCap is the number at offset i as a token count: rounded up, at
// most 2^40, and 0 for anything not a positive number.
func (p *parser) tokenCap(i int) int64 {
	c := p.body[i]
	if c != '-' && (c < '0' || c > '9') {
		return 0
	}
	end, err := number(p.body, i)
	if err != nil {
		return 0
	}
	f, err := strconv.ParseFloat(string(p.body[i:end]), 64)
	if err != nil || !(f > 0) {
		return 0
	}
	return int64(math.Min(math.Ceil(f), 1<<40))
}

// objectAt returns the index of the object whose '{' is at offset i.
func (p *parser) objectAt(i int) int {
	lo, hi := 0, len(p.objects)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if int(p.objects[mid].start) < i {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}
