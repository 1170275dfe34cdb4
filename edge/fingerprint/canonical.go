package fingerprint

import (
	"bytes"
	"hash"
	"strconv"
	"unicode/utf8"
)

// sink receives canonical bytes through a staging buffer, so that the hash
// sees few large writes and the common small writes are inlined appends.
type sink struct {
	h   hash.Hash // nil: flush appends to out
	buf []byte    // staging, never grown past its capacity
	out []byte
}

const stageSize = 4096

func (s *sink) write(p []byte) {
	if len(s.buf)+len(p) <= cap(s.buf) {
		s.buf = append(s.buf, p...)
		return
	}
	s.writeSlow(p)
}

func (s *sink) writeSlow(p []byte) {
	s.flush()
	if len(p) >= cap(s.buf)/2 {
		s.direct(p)
		return
	}
	s.buf = append(s.buf, p...)
}

func (s *sink) writeString(p string) {
	if len(s.buf)+len(p) <= cap(s.buf) {
		s.buf = append(s.buf, p...)
		return
	}
	s.flush()
	s.buf = append(s.buf, p...) // the package's strings are short
}

func (s *sink) writeByte(c byte) {
	if len(s.buf) < cap(s.buf) {
		s.buf = append(s.buf, c)
		return
	}
	s.flush()
	s.buf = append(s.buf, c)
}

func (s *sink) direct(p []byte) {
	if s.h != nil {
		s.h.Write(p)
	} else {
		s.out = append(s.out, p...)
	}
}

func (s *sink) flush() {
	if len(s.buf) > 0 {
		s.direct(s.buf)
		s.buf = s.buf[:0]
	}
}

// emitter writes the canonical form of a parsed body. It trusts the body:
// the parser has validated it.
type emitter struct {
	p *parser
	w *sink
}

// emit writes the canonical form of the whole body (the root object, minus
// the excluded top-level fields).
func (e *emitter) emit() {
	e.object(0, true)
}

func (e *emitter) value(i int) int {
	b := e.p.body
	switch b[i] {
	case '{':
		return e.object(e.p.objectAt(i), false)
	case '[':
		return e.array(i)
	case '"':
		return e.str(i)
	case 't':
		e.w.writeString("true")
		return i + 4
	case 'f':
		e.w.writeString("false")
		return i + 5
	case 'n':
		e.w.writeString("null")
		return i + 4
	}
	return e.number(i)
}

func (e *emitter) object(idx int, root bool) int {
	p := e.p
	o := p.objects[idx]
	e.w.writeByte('{')
	first := true
	for k := o.first; k < o.first+o.n; k++ {
		m := &p.members[k]
		if root && excluded(p.key(m)) {
			continue
		}
		if !first {
			e.w.writeByte(',')
		}
		first = false
		if m.escaped() {
			e.quotedDecoded(p.key(m))
		} else {
			e.w.writeByte('"')
			e.w.write(p.key(m))
			e.w.writeByte('"')
		}
		e.w.writeByte(':')
		e.value(int(m.val))
	}
	e.w.writeByte('}')
	return int(o.end)
}

func (e *emitter) array(i int) int {
	b := e.p.body
	e.w.writeByte('[')
	i = skipWS(b, i+1)
	if b[i] == ']' {
		e.w.writeByte(']')
		return i + 1
	}
	for {
		i = skipWS(b, e.value(i))
		if b[i] == ']' {
			e.w.writeByte(']')
			return i + 1
		}
		e.w.writeByte(',')
		i = skipWS(b, i+1)
	}
}

// str writes the string whose opening quote is at i and returns its end.
func (e *emitter) str(i int) int {
	b := e.p.body
	start := i + 1
	j := start
	for {
		k := bytes.IndexByte(b[j:], '"')
		j += k
		// The quote closes the string unless an odd run of backslashes
		// escapes it.
		n := 0
		for j-1-n >= start && b[j-1-n] == '\\' {
			n++
		}
		if n%2 == 0 {
			break
		}
		j++
	}
	e.quoted(b[start:j])
	return j + 1
}

// quoted writes a validated string's content in the canonical escaping:
// only '"', '\\' and control characters are escaped, the latter as \b \t \n
// \f \r or \u00xx with lower-case hex (RFC 8785 §3.2.2.2); everything else,
// '/' and non-ASCII included, is written as UTF-8. Valid JSON text is
// already canonical except for "\/" and "\u" escapes, so only those break
// the runs of bytes copied as they are.
func (e *emitter) quoted(s []byte) {
	e.w.writeByte('"')
	run := 0 // start of the bytes not yet written
	for k := 0; ; {
		i := bytes.IndexByte(s[k:], '\\')
		if i < 0 {
			break
		}
		k += i
		switch s[k+1] {
		case '"', '\\', 'b', 'f', 'n', 'r', 't':
			k += 2 // already canonical
			continue
		}
		e.w.write(s[run:k])
		r, n := decodeEscape(s[k:])
		e.rune(r)
		k += n
		run = k
	}
	e.w.write(s[run:])
	e.w.writeByte('"')
}

// quotedDecoded writes decoded (unescaped) string bytes in the canonical
// escaping.
func (e *emitter) quotedDecoded(s []byte) {
	e.w.writeByte('"')
	for len(s) > 0 {
		k := 0
		for k < len(s) && s[k] >= 0x20 && s[k] != '"' && s[k] != '\\' {
			k++
		}
		e.w.write(s[:k])
		if k == len(s) {
			break
		}
		e.rune(rune(s[k]))
		s = s[k+1:]
	}
	e.w.writeByte('"')
}

func (e *emitter) rune(r rune) {
	switch r {
	case '"':
		e.w.writeString(`\"`)
	case '\\':
		e.w.writeString(`\\`)
	case '\b':
		e.w.writeString(`\b`)
	case '\f':
		e.w.writeString(`\f`)
	case '\n':
		e.w.writeString(`\n`)
	case '\r':
		e.w.writeString(`\r`)
	case '\t':
		e.w.writeString(`\t`)
	default:
		var buf [6]byte
		if r < 0x20 {
			const hex = "0123456789abcdef"
			buf = [6]byte{'\\', 'u', '0', '0', hex[r>>4], hex[r&0xf]}
			e.w.write(buf[:])
			return
		}
		e.w.write(utf8.AppendRune(buf[:0], r))
	}
}

// number writes the number at i in canonical form (see the package
// documentation) and returns its end. It works on the literal's digits in
// place, so a long literal costs no allocation and keeps every digit.
func (e *emitter) number(i int) int {
	b := e.p.body
	neg := b[i] == '-'
	if neg {
		i++
	}
	intS := i
	i = digits(b, i)
	intE := i
	fracS, fracE := i, i
	if i < len(b) && b[i] == '.' {
		fracS = i + 1
		i = digits(b, fracS)
		fracE = i
	}
	var exp int64
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		expNeg := false
		if b[i] == '+' || b[i] == '-' {
			expNeg = b[i] == '-'
			i++
		}
		for ; i < len(b) && '0' <= b[i] && b[i] <= '9'; i++ {
			exp = exp*10 + int64(b[i]-'0') // at most 9 significant digits
		}
		if expNeg {
			exp = -exp
		}
	}
	end := i

	li, lf := intE-intS, fracE-fracS
	total := li + lf
	at := func(k int) byte {
		if k < li {
			return b[intS+k]
		}
		return b[fracS+k-li]
	}
	lead := 0
	for lead < total && at(lead) == '0' {
		lead++
	}
	if lead == total {
		e.w.writeByte('0')
		return end
	}
	last := total - 1
	for at(last) == '0' {
		last--
	}
	k := int64(last - lead + 1)
	n := k + int64(total-1-last) + exp - int64(lf)

	// digits writes significant digits [from, to) relative to lead.
	digitsOut := func(from, to int64) {
		a, z := lead+int(from), lead+int(to)
		if a < li {
			e.w.write(b[intS+a : intS+min(z, li)])
			a = li
		}
		if a < z {
			e.w.write(b[fracS+a-li : fracS+z-li])
		}
	}
	if neg {
		e.w.writeByte('-')
	}
	switch {
	case k <= n && n <= 21:
		digitsOut(0, k)
		e.zeros(n - k)
	case 0 < n && n <= 21:
		digitsOut(0, n)
		e.w.writeByte('.')
		digitsOut(n, k)
	case -6 < n && n <= 0:
		e.w.writeString("0.")
		e.zeros(-n)
		digitsOut(0, k)
	default:
		digitsOut(0, 1)
		if k > 1 {
			e.w.writeByte('.')
			digitsOut(1, k)
		}
		e.w.writeByte('e')
		if n-1 >= 0 {
			e.w.writeByte('+')
		}
		var buf [24]byte
		e.w.write(strconv.AppendInt(buf[:0], n-1, 10))
	}
	return end
}

func (e *emitter) zeros(n int64) {
	const z = "000000000000000000000"
	e.w.writeString(z[:n])
}
