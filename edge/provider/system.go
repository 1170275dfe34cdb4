package provider

import (
	"bytes"
	"encoding/json"
	"errors"
)

// System is text the edge puts in front of a request's system instruction
// (an org's memories, DESIGN §10), held as a JSON string literal so that
// each request only splices bytes. The zero System is no text.
type System struct {
	quoted []byte // the text as a JSON string, quotes included
}

// NewSystem holds text for injection. Empty text is the zero System.
func NewSystem(text string) System {
	if text == "" {
		return System{}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(text) // a string always encodes
	return System{quoted: bytes.TrimSuffix(b.Bytes(), []byte("\n"))}
}

// IsZero reports whether s holds no text.
func (s System) IsZero() bool { return len(s.quoted) == 0 }

// Quoted is the text as a JSON string, quotes included.
func (s System) Quoted() []byte { return s.quoted }

// SystemSeparator parts the injected text from a system instruction the
// client sent as a string (a paragraph break), as JSON string content.
const SystemSeparator = `\n\n`

// Span is where a value lies in a body: body[Start:End]. A Start below 0
// means the member is absent.
type Span struct{ Start, End int }

// Absent reports whether the member was not found.
func (s Span) Absent() bool { return s.Start < 0 }

var errNotObject = errors.New("the body is not a JSON object")

// Member finds the value of the top-level member name of a JSON object
// body, and where the object opens. It reads only the top level, skipping
// nested values without validating them (the fingerprint validates the
// whole body afterwards); a malformed top level, or name twice, is an
// error. Keys written with escapes are decoded before they are compared.
func Member(body []byte, name string) (open int, v Span, err error) {
	v = Span{-1, -1}
	i := skipWS(body, 0)
	if i >= len(body) || body[i] != '{' {
		return 0, v, errNotObject
	}
	open = i
	i = skipWS(body, i+1)
	if i < len(body) && body[i] == '}' {
		return open, v, nil
	}
	for {
		if i >= len(body) || body[i] != '"' {
			return 0, v, errNotObject
		}
		ks := i
		if i, err = skipString(body, i); err != nil {
			return 0, v, err
		}
		key := body[ks+1 : i-1]
		i = skipWS(body, i)
		if i >= len(body) || body[i] != ':' {
			return 0, v, errNotObject
		}
		i = skipWS(body, i+1)
		vs := i
		if i, err = skipValue(body, i); err != nil {
			return 0, v, err
		}
		if keyIs(key, name) {
			if !v.Absent() {
				return 0, v, errors.New("duplicate key " + name)
			}
			v = Span{vs, i}
		}
		i = skipWS(body, i)
		if i >= len(body) {
			return 0, v, errNotObject
		}
		switch body[i] {
		case ',':
			i = skipWS(body, i+1)
		case '}':
			if rest := skipWS(body, i+1); rest != len(body) {
				return 0, v, errNotObject
			}
			return open, v, nil
		default:
			return 0, v, errNotObject
		}
	}
}

// keyIs compares a raw key (between its quotes) with name.
func keyIs(raw []byte, name string) bool {
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw) == name
	}
	var s string
	if json.Unmarshal(append(append([]byte{'"'}, raw...), '"'), &s) != nil {
		return false
	}
	return s == name
}

func skipWS(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\r', '\n':
			i++
		default:
			return i
		}
	}
	return i
}

var errTruncated = errors.New("the body ends inside a value")

// skipString returns the index after the string opening at i.
func skipString(b []byte, i int) (int, error) {
	for i++; ; {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return 0, errTruncated
		}
		i += j
		// The quote ends the string unless an odd run of backslashes
		// escapes it.
		n := 0
		for k := i - 1; k >= 0 && b[k] == '\\'; k-- {
			n++
		}
		i++
		if n%2 == 0 {
			return i, nil
		}
	}
}

// structural marks the bytes skipValue stops at inside an object or array.
var structural = [256]bool{'"': true, '{': true, '[': true, '}': true, ']': true}

// skipValue returns the index after the value starting at i: a string, an
// object or array (brackets counted, strings skipped), or a literal or
// number (up to the next delimiter).
func skipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errTruncated
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			c := b[i]
			if !structural[c] {
				i++
				continue
			}
			switch c {
			case '"':
				j, err := skipString(b, i)
				if err != nil {
					return 0, err
				}
				i = j
				continue
			case '{', '[':
				depth++
			default:
				if depth--; depth == 0 {
					return i + 1, nil
				}
			}
			i++
		}
		return 0, errTruncated
	case ',', ':', '}', ']':
		return 0, errNotObject
	}
	start := i
	for i < len(b) {
		switch b[i] {
		case ',', '}', ']', ' ', '\t', '\r', '\n':
			return i, nil
		}
		i++
	}
	if i == start {
		return 0, errTruncated
	}
	return i, nil
}

// splice returns body with body[at:at+cut] replaced by the parts, in a
// new buffer.
func splice(body []byte, at, cut int, parts ...[]byte) []byte {
	n := len(body) - cut
	for _, p := range parts {
		n += len(p)
	}
	out := make([]byte, 0, n)
	out = append(out, body[:at]...)
	for _, p := range parts {
		out = append(out, p...)
	}
	return append(out, body[at+cut:]...)
}

var (
	comma       = []byte{','}
	colon       = []byte{':'}
	sepAndQuote = []byte(SystemSeparator)
)

// InsertFirst puts the element before+s+after (for example
// {"role":"system","content": s }) first in the array whose '[' is at
// v.Start. ok is false when v is not an array.
func InsertFirst(body []byte, v Span, before []byte, s System, after []byte) (out []byte, ok bool) {
	if v.Absent() || body[v.Start] != '[' {
		return body, false
	}
	at := v.Start + 1
	var sep []byte
	if body[skipWS(body, at)] != ']' {
		sep = comma
	}
	return splice(body, at, 0, before, s.Quoted(), after, sep), true
}

// PrependString puts s in front of the string member name of the object
// opening at open, whose value is v: a string gets s and SystemSeparator
// in front of its text (or becomes s when empty); an absent or null
// member becomes s. ok is false for a value of any other type.
func PrependString(body []byte, open int, name string, v Span, s System) (out []byte, ok bool) {
	q := s.Quoted()
	switch {
	case v.Absent():
		var sep []byte
		if body[skipWS(body, open+1)] != '}' {
			sep = comma
		}
		return splice(body, open+1, 0, []byte(`"`+name+`"`), colon, q, sep), true
	case string(body[v.Start:v.End]) == "null":
		return splice(body, v.Start, v.End-v.Start, q), true
	case body[v.Start] == '"':
		if v.End-v.Start == 2 { // ""
			return splice(body, v.Start, 2, q), true
		}
		// "s" + \n\n + the client's text, its opening quote dropped.
		return splice(body, v.Start, 1, q[:len(q)-1], sepAndQuote), true
	}
	return body, false
}
