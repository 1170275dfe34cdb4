package usage

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"unicode/utf8"
)

// scanner walks a JSON answer member by member so that Parse decodes only
// the few members it reads (the usage object is tiny, the answer may be
// many MiB) and skips the rest without decoding or copying them.
//
// It validates everything it walks over as strictly as encoding/json's own
// syntax check, which json.Unmarshal runs over the whole input before it
// decodes anything: a body the reference decoder would refuse as
// malformed, truncated, or nested deeper than maxDepth is refused here
// too, so Parse errs exactly when json.Unmarshal of the whole body would.
// Like encoding/json it does not check UTF-8: invalid bytes inside strings
// are not an error (decoded strings get U+FFFD, see decodeString).
//
// The scanner only indexes data within bounds; every read is guarded by a
// length check, so no input makes it panic.
type scanner struct {
	data []byte
	off  int
}

// maxDepth is encoding/json's nesting limit: the top-level object counts
// as 1, and a body nested deeper is an error.
const maxDepth = 10000

type syntaxError struct {
	msg string
	off int
}

func (e *syntaxError) Error() string {
	return fmt.Sprintf("invalid JSON at offset %d: %s", e.off, e.msg)
}

func (s *scanner) errorf(msg string) error {
	if s.off >= len(s.data) {
		return &syntaxError{msg: "unexpected end of JSON input", off: len(s.data)}
	}
	return &syntaxError{msg: fmt.Sprintf("%s, found %q", msg, s.data[s.off]), off: s.off}
}

func (s *scanner) skipSpace() {
	for s.off < len(s.data) {
		switch s.data[s.off] {
		case ' ', '\t', '\n', '\r':
			s.off++
		default:
			return
		}
	}
}

// peek returns the next byte after white space, 0 at the end of input (0
// is never valid there, so callers treat it like any unexpected byte).
func (s *scanner) peek() byte {
	s.skipSpace()
	if s.off >= len(s.data) {
		return 0
	}
	return s.data[s.off]
}

// openObject moves past the '{' that opens the top-level value. A
// top-level null, which json.Unmarshal accepts into a struct or map as
// "nothing", yields null = true with the input fully checked.
func (s *scanner) openObject() (null bool, err error) {
	switch s.peek() {
	case '{':
		s.off++
		return false, nil
	case 'n':
		if err := s.literal("null"); err != nil {
			return false, err
		}
		return true, s.end()
	}
	return false, s.errorf("want a JSON object")
}

// end checks that nothing but white space follows the top-level value.
func (s *scanner) end() error {
	s.skipSpace()
	if s.off != len(s.data) {
		return s.errorf("invalid character after top-level value")
	}
	return nil
}

// nextMember moves to the next member of the object being read: past the
// ',' before it (unless first), its name and the ':' after the name. At
// the end of the object it consumes the '}' and returns more = false.
//
// The name is decoded as encoding/json decodes it, escapes resolved and
// invalid UTF-8 replaced with U+FFFD (both rare in a member name, so those
// cases may allocate): names are matched, and used as map keys, decoded.
func (s *scanner) nextMember(first bool) (name []byte, more bool, err error) {
	c := s.peek()
	switch {
	case c == '}':
		s.off++
		return nil, false, nil
	case first:
	case c == ',':
		s.off++
		c = s.peek()
	default:
		return nil, false, s.errorf("want ',' or '}' after object member")
	}
	if c != '"' {
		return nil, false, s.errorf("want a member name")
	}
	start := s.off
	plain, err := s.skipString()
	if err != nil {
		return nil, false, err
	}
	name = s.data[start+1 : s.off-1]
	if !plain && (bytes.IndexByte(name, '\\') >= 0 || !utf8.Valid(name)) {
		var n string
		if err := json.Unmarshal(s.data[start:s.off], &n); err != nil {
			return nil, false, fmt.Errorf("member name: %w", err)
		}
		name = []byte(n)
	}
	if s.peek() != ':' {
		return nil, false, s.errorf("want ':' after member name")
	}
	s.off++
	return name, true, nil
}

// value checks the value that starts at the next non-space byte, moves
// past it and returns its bytes. depth is the nesting depth of the
// container that holds the value.
func (s *scanner) value(depth int) ([]byte, error) {
	s.skipSpace()
	start := s.off
	if err := s.skipValue(depth); err != nil {
		return nil, err
	}
	return s.data[start:s.off], nil
}

// skipValue checks and moves past the value at the next non-space byte.
// depth is the nesting depth of the container that holds the value.
func (s *scanner) skipValue(depth int) error {
	switch s.peek() {
	case '{', '[':
		return s.skipContainer(depth)
	case '"':
		_, err := s.skipString()
		return err
	case 't':
		return s.literal("true")
	case 'f':
		return s.literal("false")
	case 'n':
		return s.literal("null")
	}
	return s.number()
}

// skipContainer checks and moves past the object or array at s.off.
// Nested containers are walked iteratively, with one bit per level
// recording whether the level is an array, so deep input costs neither
// stack growth nor heap.
func (s *scanner) skipContainer(depth int) error {
	var arrays nesting
	base := depth
	for {
		// A value is expected at the next non-space byte.
		switch c := s.peek(); c {
		case '{', '[':
			if depth++; depth > maxDepth {
				return s.errorf("exceeded max depth")
			}
			s.off++
			arrays.set(depth, c == '[')
			if s.peek() != closing(c == '[') {
				if c == '{' {
					if err := s.memberName(); err != nil {
						return err
					}
				}
				continue // to the first element or member's value
			}
			s.off++ // an empty container
			depth--
		default:
			if err := s.skipValue(depth); err != nil {
				return err
			}
		}
		// A value ended: close containers until one goes on.
		for {
			if depth == base {
				return nil
			}
			array := arrays.array(depth)
			c := s.peek()
			if c == ',' {
				s.off++
				if !array {
					if err := s.memberName(); err != nil {
						return err
					}
				}
				break
			}
			if c != closing(array) {
				return s.afterValueError(array)
			}
			s.off++
			depth--
		}
	}
}

// nesting records, one bit per level, which of the open containers are
// arrays.
type nesting [maxDepth/64 + 1]uint64

func (n *nesting) set(depth int, array bool) {
	bit := uint64(1) << (depth % 64)
	if array {
		n[depth/64] |= bit
	} else {
		n[depth/64] &^= bit
	}
}

func (n *nesting) array(depth int) bool {
	return n[depth/64]&(uint64(1)<<(depth%64)) != 0
}

// closing returns the byte that closes an array or an object.
func closing(array bool) byte {
	if array {
		return ']'
	}
	return '}'
}

func (s *scanner) afterValueError(array bool) error {
	if array {
		return s.errorf("want ',' or ']' after array element")
	}
	return s.errorf("want ',' or '}' after object member")
}

// memberName checks and moves past a member name at the next non-space
// byte and the ':' after it.
func (s *scanner) memberName() error {
	if s.peek() != '"' {
		return s.errorf("want a member name")
	}
	if _, err := s.skipString(); err != nil {
		return err
	}
	if s.peek() != ':' {
		return s.errorf("want ':' after member name")
	}
	s.off++
	return nil
}

func (s *scanner) literal(lit string) error {
	if len(s.data)-s.off < len(lit) || string(s.data[s.off:s.off+len(lit)]) != lit {
		return s.errorf("invalid literal")
	}
	s.off += len(lit)
	return nil
}

// number checks and moves past a number:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) number() error {
	d, i := s.data, s.off
	digits := func() bool {
		n := i
		for i < len(d) && '0' <= d[i] && d[i] <= '9' {
			i++
		}
		return i > n
	}
	if i < len(d) && d[i] == '-' {
		i++
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case i < len(d) && '1' <= d[i] && d[i] <= '9':
		digits()
	default:
		s.off = i
		return s.errorf("invalid character looking for a value")
	}
	if i < len(d) && d[i] == '.' {
		i++
		if !digits() {
			s.off = i
			return s.errorf("want a digit after the decimal point")
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if !digits() {
			s.off = i
			return s.errorf("want a digit in the exponent")
		}
	}
	s.off = i
	return nil
}

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// special is non-zero when one of the 8 bytes in x (read little-endian)
// is a '"', a '\\' or a control character: the bytes that need a look
// inside a string. It sets the high bit of such bytes (the classic "has
// zero byte" and "has byte less than n" word tricks): the lowest bit set
// marks the first such byte exactly, since a borrow runs only upward from
// a byte that is one; bits above it may be false.
func special(x uint64) uint64 {
	q := x ^ (lsb * '"')
	b := x ^ (lsb * '\\')
	return ((x-lsb*0x20)&^x | (q-lsb)&^q | (b-lsb)&^b) & msb
}

// skipString checks and moves past the string at s.off (which is '"'),
// eight bytes at a time where it can: the long content strings of an
// answer are most of its bytes. plain reports a string without escapes
// and all ASCII, whose bytes are its decoded value.
func (s *scanner) skipString() (plain bool, err error) {
	d := s.data
	i := s.off + 1
	var seen uint64 // the bytes seen, OR-ed: a non-ASCII one sets a high bit
	escaped := false
words:
	for {
		w := d[i:] // i <= len(d): an escape is never cut by the end
		for len(w) >= 8 {
			x := binary.LittleEndian.Uint64(w)
			if m := special(x); m != 0 {
				// The lowest flag is exact: skip to the special byte.
				k := bits.TrailingZeros64(m) / 8
				seen |= x & (1<<(8*k) - 1)
				w = w[k:]
				break
			}
			seen |= x
			w = w[8:]
		}
		i = len(d) - len(w)
		// At a special byte, or fewer than 8 are left: go byte by byte, and
		// after an escape back to words (the escaped newlines and quotes of
		// answer text are frequent).
		for i < len(d) {
			switch c := d[i]; {
			case c == '"':
				s.off = i + 1
				return !escaped && seen&msb == 0, nil
			case c == '\\':
				escaped = true
				n, ok := escapeLen(d[i:])
				if !ok {
					s.off = i
					return false, s.errorf("invalid escape in string")
				}
				i += n
				continue words
			case c < 0x20:
				s.off = i
				return false, s.errorf("invalid control character in string")
			default:
				seen |= uint64(c)
				i++
			}
		}
		s.off = len(d)
		return false, s.errorf("")
	}
}

// escapeLen returns the length of the escape sequence that opens b (at a
// '\\'), and false if it is not a valid one.
func escapeLen(b []byte) (int, bool) {
	if len(b) < 2 {
		return 0, false
	}
	switch b[1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return 2, true
	case 'u':
		if len(b) < 6 {
			return 0, false
		}
		for _, c := range b[2:6] {
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return 0, false
			}
		}
		return 6, true
	}
	return 0, false
}

// decodeString decodes a member's value that must be a string or null, as
// json.Unmarshal into a string would: null reports null = true. The common
// case, a checked string without escapes and in valid UTF-8, costs one
// copy.
func decodeString(raw []byte) (s string, null bool, err error) {
	if len(raw) > 0 && raw[0] == 'n' {
		return "", true, nil
	}
	if len(raw) >= 2 && raw[0] == '"' {
		inner := raw[1 : len(raw)-1]
		if bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) {
			return string(inner), false, nil
		}
	}
	var v string
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", false, err
	}
	return v, false, nil
}

// errFallback asks for a value to be decoded with json.Unmarshal instead.
var errFallback = errors.New("usage: decode with encoding/json")

// The decoders below read the usage objects without reflection, which is
// most of what json.Unmarshal of a usage object costs. Each follows
// encoding/json's rules for the field types involved, and the differential
// tests hold them to it:
//
//   - a member name matches a field exactly or else case-insensitively
//     (fieldIndex); a member matching no field is skipped;
//   - members are decoded in order into the same struct, so the last of
//     duplicate members wins, and a pointer to a struct that is already
//     set is decoded into, not replaced (the values merge);
//   - a count is whatever count.UnmarshalJSON makes of the value's bytes;
//   - null sets a pointer, map or slice field to nil, and leaves any other
//     field as it is;
//   - a value of the wrong JSON type for its field is an error.

var errType = errors.New("usage: a member has the wrong JSON type")

// fieldIndex returns the index of the field name matches, or -1.
func fieldIndex(name []byte, fields []string) int {
	for i, f := range fields {
		if string(name) == f {
			return i
		}
	}
	// An ASCII name folds to a field name of its length only; a longer one
	// may fold to a shorter name ("ſ" is 's', "K" is 'k').
	ascii := true
	for _, c := range name {
		if c >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	for i, f := range fields {
		if (!ascii || len(name) == len(f)) && bytes.EqualFold(name, []byte(f)) {
			return i
		}
	}
	return -1
}

// object reads the object value at the next non-space byte, calling
// member with each member's decoded name; member must move s past the
// value. It reports null for a null instead, and errType for a value of
// another type.
func (s *scanner) object(member func(name []byte) error) (null bool, err error) {
	switch s.peek() {
	case 'n':
		return true, s.literal("null")
	case '{':
		s.off++
	default:
		return false, errType
	}
	for first := true; ; first = false {
		name, more, err := s.nextMember(first)
		if err != nil || !more {
			return false, err
		}
		if err := member(name); err != nil {
			return false, err
		}
	}
}

// countValue reads a value into c. depth is that of its container.
func (s *scanner) countValue(c *count, depth int) error {
	raw, err := s.value(depth)
	if err != nil {
		return err
	}
	return c.UnmarshalJSON(raw)
}

// stringPtrValue reads a value into a *string field.
func (s *scanner) stringPtrValue(p **string, depth int) error {
	raw, err := s.value(depth)
	if err != nil {
		return err
	}
	str, null, err := decodeString(raw)
	switch {
	case err != nil:
		return err
	case null:
		*p = nil
	default:
		v := str // allocated here only
		*p = &v
	}
	return nil
}

// newIfObject prepares a pointer-to-struct field for the value at the
// next non-space byte: for an object it allocates *p when nil (an object
// already there is decoded into) and reports true, for the caller to read
// the members; a null sets *p to nil.
func newIfObject[T any](s *scanner, p **T) (object bool, err error) {
	switch s.peek() {
	case 'n':
		*p = nil
		return false, s.literal("null")
	case '{':
		if *p == nil {
			*p = new(T)
		}
		return true, nil
	}
	return false, errType
}
