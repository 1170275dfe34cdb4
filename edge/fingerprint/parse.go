package fingerprint

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"unicode/utf8"
)

// MaxDepth is the deepest nesting of objects and arrays a body may have; the
// top-level object is depth 1. Deeper bodies are rejected: no API request
// needs them and they only cost stack.
const MaxDepth = 64

// MaxIndexed bounds the number of objects plus object members in a body.
// The validator indexes each (in 16 and 12 bytes) so that the canonical form
// can be streamed; the bound keeps that index under about 16 MiB whatever
// the body, far above what any real request needs.
const MaxIndexed = 1 << 20

// maxExponentDigits bounds a number's exponent (after leading zeros): numbers
// like 1e1000000000 are rejected instead of being normalised.
const maxExponentDigits = 9

// ErrInvalid is wrapped by every error about the body, so callers can answer
// 400 with errors.Is(err, ErrInvalid).
var ErrInvalid = errors.New("invalid JSON request body")

// Error describes what is wrong with a body and where. It never contains
// any of the body's content.
type Error struct {
	Offset int    // byte offset in the body
	Reason string // fixed text, e.g. "duplicate object key"
}

func (e *Error) Error() string {
	return fmt.Sprintf("%v: %s at byte %d", ErrInvalid, e.Reason, e.Offset)
}

func (e *Error) Unwrap() error { return ErrInvalid }

func errAt(off int, reason string) error { return &Error{Offset: off, Reason: reason} }

// member is one key/value pair of an object, located in the body. Keys that
// contain escapes are decoded into the parser's arena, because keys are
// sorted and compared by their decoded bytes; the arena then also records
// where the key was, for error messages. 12 bytes per member keep the index
// small next to the body even for bodies made of tiny objects.
type member struct {
	key  uint32 // offset of the key's bytes: in the body, or in the arena
	klen uint32 // length of the key's bytes, | inArena
	val  uint32 // offset of the value's first byte in the body
}

const inArena = 1 << 31

// escaped reports whether the key is decoded in the arena.
func (m *member) escaped() bool { return m.klen&inArena != 0 }

// object locates one object and its members, sorted by decoded key.
type object struct {
	start, end uint32 // offset of '{' and just past '}'
	first, n   uint32 // members[first:first+n]
}

// parser validates a body in one pass and indexes its objects, so that the
// canonical form can then be written without re-validating and without
// copying any string or number. Its memory is proportional to the number of
// object members, never to the size of strings. Parsers are pooled.
type parser struct {
	body    []byte
	members []member // per object, contiguous and sorted
	open    []member // members of the objects still open, innermost last
	objects []object // in order of their '{' (pre-order), so sorted by start
	arena   []byte
	depth   int
}

func (p *parser) reset(body []byte) {
	p.body = body
	p.members = p.members[:0]
	p.open = p.open[:0]
	p.objects = p.objects[:0]
	p.arena = p.arena[:0]
	p.depth = 0
}

// release drops whatever an unusually large body made the parser grow, so
// that the pool does not keep it alive.
func (p *parser) release() {
	p.body = nil
	const maxKept = 1 << 14
	if cap(p.members) > maxKept || cap(p.open) > maxKept {
		p.members, p.open = nil, nil
	}
	if cap(p.objects) > maxKept {
		p.objects = nil
	}
	if cap(p.arena) > 1<<16 {
		p.arena = nil
	}
}

// key returns a member's key bytes, decoded.
func (p *parser) key(m *member) []byte {
	n := m.klen &^ inArena
	if m.escaped() {
		return p.arena[m.key : m.key+n]
	}
	return p.body[m.key : m.key+n]
}

// keyPos returns the offset of a member's opening quote.
func (p *parser) keyPos(m *member) int {
	if m.escaped() {
		return int(binary.LittleEndian.Uint32(p.arena[m.key-4:]))
	}
	return int(m.key) - 1
}

// parse validates the whole body as a single JSON object.
func (p *parser) parse(body []byte) error {
	p.reset(body)
	if len(body) >= inArena {
		return errAt(0, "body of 2 GiB or more")
	}
	i := skipWS(body, 0)
	if i == len(body) {
		return errAt(i, "empty body")
	}
	if body[i] != '{' {
		return errAt(i, "body is not a JSON object")
	}
	i, err := p.object(i)
	if err != nil {
		return err
	}
	if i = skipWS(body, i); i != len(body) {
		return errAt(i, "data after the JSON object")
	}
	return nil
}

func skipWS(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

func (p *parser) value(i int) (int, error) {
	b := p.body
	if i >= len(b) {
		return i, errAt(i, "unexpected end of body")
	}
	switch c := b[i]; {
	case c == '{':
		return p.object(i)
	case c == '[':
		return p.array(i)
	case c == '"':
		end, _, err := p.str(i)
		return end, err
	case c == 't':
		return literal(b, i, "true")
	case c == 'f':
		return literal(b, i, "false")
	case c == 'n':
		return literal(b, i, "null")
	case c == '-' || '0' <= c && c <= '9':
		return number(b, i)
	}
	return i, errAt(i, "invalid character where a value is expected")
}

func literal(b []byte, i int, lit string) (int, error) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return i, errAt(i, "invalid literal")
	}
	return i + len(lit), nil
}

func (p *parser) enter(i int) error {
	p.depth++
	if p.depth > MaxDepth {
		return errAt(i, fmt.Sprintf("nesting deeper than %d", MaxDepth))
	}
	return nil
}

func (p *parser) array(i int) (int, error) {
	if err := p.enter(i); err != nil {
		return i, err
	}
	b := p.body
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		p.depth--
		return i + 1, nil
	}
	for {
		var err error
		if i, err = p.value(i); err != nil {
			return i, err
		}
		i = skipWS(b, i)
		if i >= len(b) {
			return i, errAt(i, "unexpected end of body in array")
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
		case ']':
			p.depth--
			return i + 1, nil
		default:
			return i, errAt(i, "expected ',' or ']' in array")
		}
	}
}

func (p *parser) object(i int) (int, error) {
	if err := p.enter(i); err != nil {
		return i, err
	}
	b := p.body
	if len(p.members)+len(p.open)+len(p.objects) >= MaxIndexed {
		return i, errAt(i, "too many objects and members")
	}
	idx := len(p.objects)
	p.objects = append(p.objects, object{start: uint32(i)})
	base := len(p.open)
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return p.closeObject(idx, base, i)
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return i, errAt(i, "expected a string key in object")
		}
		end, esc, err := p.str(i)
		if err != nil {
			return i, err
		}
		if len(p.members)+len(p.open)+len(p.objects) >= MaxIndexed {
			return i, errAt(i, "too many objects and members")
		}
		m := member{key: uint32(i + 1), klen: uint32(end - i - 2)}
		if esc {
			p.arena = binary.LittleEndian.AppendUint32(p.arena, uint32(i))
			m.key = uint32(len(p.arena))
			p.arena = appendDecoded(p.arena, b[i+1:end-1])
			m.klen = (uint32(len(p.arena)) - m.key) | inArena
		}
		i = skipWS(b, end)
		if i >= len(b) || b[i] != ':' {
			return i, errAt(i, "expected ':' after object key")
		}
		i = skipWS(b, i+1)
		m.val = uint32(i)
		p.open = append(p.open, m)
		if i, err = p.value(i); err != nil {
			return i, err
		}
		i = skipWS(b, i)
		if i >= len(b) {
			return i, errAt(i, "unexpected end of body in object")
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
		case '}':
			return p.closeObject(idx, base, i)
		default:
			return i, errAt(i, "expected ',' or '}' in object")
		}
	}
}

// closeObject sorts the members of the object whose '}' is at i, rejects
// duplicate keys, and moves them from the open stack to the index.
func (p *parser) closeObject(idx, base, i int) (int, error) {
	ms := p.open[base:]
	if len(ms) <= 12 {
		// Most objects are small; a plain insertion sort beats the
		// generic sort's indirect comparisons there.
		for k := 1; k < len(ms); k++ {
			for j := k; j > 0 && bytes.Compare(p.key(&ms[j-1]), p.key(&ms[j])) > 0; j-- {
				ms[j-1], ms[j] = ms[j], ms[j-1]
			}
		}
	} else {
		slices.SortFunc(ms, func(x, y member) int { return bytes.Compare(p.key(&x), p.key(&y)) })
	}
	for k := 1; k < len(ms); k++ {
		if bytes.Equal(p.key(&ms[k-1]), p.key(&ms[k])) {
			return i, errAt(max(p.keyPos(&ms[k-1]), p.keyPos(&ms[k])), "duplicate object key")
		}
	}
	o := &p.objects[idx]
	o.end = uint32(i + 1)
	o.first = uint32(len(p.members))
	o.n = uint32(len(ms))
	p.members = append(p.members, ms...)
	p.open = p.open[:base]
	p.depth--
	return i + 1, nil
}

// strClass classifies string bytes: 0 plain ASCII, 1 quote, 2 backslash,
// 3 control character, 4 start of a multi-byte UTF-8 sequence (or invalid).
var strClass = func() (t [256]byte) {
	for c := range 0x20 {
		t[c] = 3
	}
	t['"'] = 1
	t['\\'] = 2
	for c := 0x80; c < 0x100; c++ {
		t[c] = 4
	}
	return t
}()

// str validates the string starting at the quote at i and returns the
// offset just past its closing quote and whether it contains escapes.
// Strings must be valid UTF-8 and their \u escapes must not leave a lone
// surrogate (I-JSON, RFC 7493 §2.1): both would make "the same string"
// ambiguous.
func (p *parser) str(i int) (end int, esc bool, err error) {
	b := p.body
	j := i + 1
	for {
		j = plainRun(b, j)
		for j < len(b) && strClass[b[j]] == 0 {
			j++
		}
		if j >= len(b) {
			return j, esc, errAt(i, "unterminated string")
		}
		switch strClass[b[j]] {
		case 1:
			return j + 1, esc, nil
		case 2:
			esc = true
			if j, err = escape(b, j); err != nil {
				return j, esc, err
			}
		case 3:
			return j, esc, errAt(j, "control character in string")
		case 4:
			r, size := utf8.DecodeRune(b[j:])
			if r == utf8.RuneError && size <= 1 {
				return j, esc, errAt(j, "invalid UTF-8 in string")
			}
			j += size
		}
	}
}

// plainRun returns the offset of the first byte at or after j that may
// need attention in a string (quote, backslash, control or non-ASCII),
// looking at 8 bytes at a time; it may stop a little early, never late.
func plainRun(b []byte, j int) int {
	const (
		ones  = 0x0101010101010101
		highs = 0x8080808080808080
	)
	for ; j+8 <= len(b); j += 8 {
		x := binary.LittleEndian.Uint64(b[j:])
		// A byte's high bit ends up set if it is below 0x20, equal to
		// '"' or '\\', or non-ASCII. Borrows only run upwards from such a
		// byte, so the lowest flagged byte is always a real one.
		m := (x - 0x20*ones) | ((x ^ '"'*ones) - ones) | ((x ^ '\\'*ones) - ones) | x
		if m&highs != 0 {
			return j + bits.TrailingZeros64(m&highs)/8
		}
	}
	return j
}

// escape validates the escape sequence at b[j] == '\\' and returns the
// offset after it.
func escape(b []byte, j int) (int, error) {
	if j+1 >= len(b) {
		return j, errAt(j, "unterminated escape")
	}
	switch b[j+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return j + 2, nil
	case 'u':
		r, ok := hex4(b, j+2)
		if !ok {
			return j, errAt(j, "invalid \\u escape")
		}
		switch {
		case 0xDC00 <= r && r <= 0xDFFF:
			return j, errAt(j, "lone surrogate in \\u escape")
		case 0xD800 <= r && r <= 0xDBFF:
			if j+7 >= len(b) || b[j+6] != '\\' || b[j+7] != 'u' {
				return j, errAt(j, "lone surrogate in \\u escape")
			}
			lo, ok := hex4(b, j+8)
			if !ok || lo < 0xDC00 || lo > 0xDFFF {
				return j, errAt(j, "lone surrogate in \\u escape")
			}
			return j + 12, nil
		}
		return j + 6, nil
	}
	return j, errAt(j, "invalid escape")
}

// hex4 decodes the 4 hex digits at b[i:].
func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// number validates the number at i (RFC 8259 §6) and returns its end.
func number(b []byte, i int) (int, error) {
	start := i
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		i = digits(b, i)
	default:
		return start, errAt(start, "invalid number")
	}
	if i < len(b) && b[i] == '.' {
		if j := digits(b, i+1); j == i+1 {
			return start, errAt(start, "invalid number")
		} else {
			i = j
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(b, i)
		if j == i {
			return start, errAt(start, "invalid number")
		}
		for i < j-1 && b[i] == '0' {
			i++
		}
		if j-i > maxExponentDigits {
			return start, errAt(start, "number exponent out of range")
		}
		i = j
	}
	return i, nil
}

func digits(b []byte, i int) int {
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		i++
	}
	return i
}

// appendDecoded appends the decoded form of a validated string's content.
func appendDecoded(dst, s []byte) []byte {
	for len(s) > 0 {
		k := bytes.IndexByte(s, '\\')
		if k < 0 {
			return append(dst, s...)
		}
		dst = append(dst, s[:k]...)
		r, n := decodeEscape(s[k:])
		dst = utf8.AppendRune(dst, r)
		s = s[k+n:]
	}
	return dst
}

// decodeEscape decodes the validated escape sequence at the start of s and
// returns the rune and the sequence's length.
func decodeEscape(s []byte) (rune, int) {
	switch s[1] {
	case 'b':
		return '\b', 2
	case 'f':
		return '\f', 2
	case 'n':
		return '\n', 2
	case 'r':
		return '\r', 2
	case 't':
		return '\t', 2
	case 'u':
		r, _ := hex4(s, 2)
		if 0xD800 <= r && r <= 0xDBFF {
			lo, _ := hex4(s, 8)
			return 0x10000 + (r-0xD800)<<10 + (lo - 0xDC00), 12
		}
		return r, 6
	}
	return rune(s[1]), 2 // '"', '\\', '/'
}
