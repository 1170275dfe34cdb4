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

// reserve makes room for n bytes in the staging buffer, for callers that
// append there in place: a small scratch buffer of their own would escape
// to the heap through the hash's Write.
func (s *sink) reserve(n int) {
	if cap(s.buf)-len(s.buf) < n {
		s.flush()
	}
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
		if r < 0x20 {
			const hex = "0123456789abcdef"
			e.w.writeString(`\u00`)
			e.w.writeByte(hex[r>>4])
			e.w.writeByte(hex[r&0xf])
			return
		}
		e.w.reserve(utf8.UTFMax)
		e.w.buf = utf8.AppendRune(e.w.buf, r)
	}
}

// number writes the number at i in canonical form (see the package
// documentation) and returns its end. It works on the literal's digits in
// place, so a long literal costs no allocation and keeps every digit.
func (e *emitter) number(i int) int {
	b := e.p.body
	d := numberLit{neg: b[i] == '-'}
	if d.neg {
		i++
	}
	d.intS = i
	i = digits(b, i)
	d.intE, d.fracS, d.fracE = i, i, i
	if i < len(b) && b[i] == '.' {
		d.fracS = i + 1
		i = digits(b, d.fracS)
		d.fracE = i
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		d.exp, i = exponent(b, i+1)
	}
	e.decimal(&d)
	return i
}

// exponent reads the digits of an exponent, with their sign, at i.
func exponent(b []byte, i int) (exp int64, end int) {
	neg := b[i] == '-'
	if neg || b[i] == '+' {
		i++
	}
	for ; i < len(b) && '0' <= b[i] && b[i] <= '9'; i++ {
		exp = exp*10 + int64(b[i]-'0') // at most 9 significant digits
	}
	if neg {
		exp = -exp
	}
	return exp, i
}

// numberLit is a validated number literal, as offsets into the body: its
// digits are those of the integer part followed by those of the fraction.
type numberLit struct {
	neg          bool
	intS, intE   int   // the integer part
	fracS, fracE int   // the fraction, empty when there is none
	exp          int64 // the exponent's value
}

// decimal writes the value of d in canonical form.
func (e *emitter) decimal(d *numberLit) {
	b := e.p.body
	li, lf := d.intE-d.intS, d.fracE-d.fracS
	total := li + lf
	at := func(k int) byte {
		if k < li {
			return b[d.intS+k]
		}
		return b[d.fracS+k-li]
	}
	// The significant digits s have no leading or trailing zeros; k is
	// their count and the value is 0.s × 10^n.
	lead := 0
	for lead < total && at(lead) == '0' {
		lead++
	}
	if lead == total {
		e.w.writeByte('0')
		return
	}
	last := total - 1
	for at(last) == '0' {
		last--
	}
	k := int64(last - lead + 1)
	n := k + int64(total-1-last) + d.exp - int64(lf)
	if d.neg {
		e.w.writeByte('-')
	}
	switch {
	case k <= n && n <= 21:
		e.sigDigits(d, lead, 0, k)
		e.zeros(n - k)
	case 0 < n && n <= 21:
		e.sigDigits(d, lead, 0, n)
		e.w.writeByte('.')
		e.sigDigits(d, lead, n, k)
	case -6 < n && n <= 0:
		e.w.writeString("0.")
		e.zeros(-n)
		e.sigDigits(d, lead, 0, k)
	default:
		e.sigDigits(d, lead, 0, 1)
		if k > 1 {
			e.w.writeByte('.')
			e.sigDigits(d, lead, 1, k)
		}
		e.w.writeByte('e')
		if n-1 >= 0 {
			e.w.writeByte('+')
		}
		e.w.reserve(20) // the longest int64
		e.w.buf = strconv.AppendInt(e.w.buf, n-1, 10)
	}
}

// sigDigits writes d's significant digits [from, to), those that start at
// its digit lead.
func (e *emitter) sigDigits(d *numberLit, lead int, from, to int64) {
	b := e.p.body
	a, z := lead+int(from), lead+int(to)
	li := d.intE - d.intS
	if a < li {
		e.w.write(b[d.intS+a : d.intS+min(z, li)])
		a = li
	}
	if a < z {
		e.w.write(b[d.fracS+a-li : d.fracS+z-li])
	}
}

func (e *emitter) zeros(n int64) {
	const z = "000000000000000000000"
	e.w.writeString(z[:n])
}
