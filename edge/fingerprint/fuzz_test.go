package fingerprint

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"unicode/utf16"
	"unicode/utf8"
)

// FuzzSum checks, for arbitrary bytes: Sum never panics; it accepts exactly
// the bodies encoding/json accepts as an object, minus the documented
// stricter rules; errors carry only fixed reasons; and on accepted bodies
// the fingerprint ignores spelling but not content.
func FuzzSum(f *testing.F) {
	for _, s := range []string{
		`{}`,
		`{"model":"gpt-4o","messages":[{"role":"user","content":"Hi \u00e9\ud83d\ude00"}],"stream":true}`,
		`{"a":[1,1.0,-0,1e21,0.0000001,9007199254740993],"b":{"c":null,"d":[true,false]}}`,
		`{"user":"u","metadata":{"k":"v"},"store":false,"stream_options":{"include_usage":true}}`,
		`{"a":1,"\u0061":2}`,
		`{"a":"\ud800"}`,
		"{\"a\":\"\xff\"}",
		`{"a":1e1000000000}`,
		`{"model":5}`,
		`[1]`,
		`{"a":1} {}`,
		strings.Repeat(`{"a":`, 65) + "1" + strings.Repeat("}", 65),
		string(chatBody(1 << 10)),
	} {
		f.Add([]byte(s))
	}
	fp := New(secretA)
	f.Fuzz(func(t *testing.T, body []byte) {
		sum, info, err := fp.Sum("openai", "chat.completions", body)
		want := oracleAccepts(body)
		if (err == nil) != want {
			t.Fatalf("Sum error = %v, but reference accepts = %v", err, want)
		}
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || !slices.Contains(reasons, e.Reason) || e.Offset < 0 || e.Offset > len(body) {
				t.Fatalf("unexpected error %#v", err)
			}
			return
		}
		if _, err := Scan(body); err != nil {
			t.Fatalf("Sum accepts but Scan rejects: %v", err)
		}
		var doc map[string]any
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		if err := dec.Decode(&doc); err != nil {
			t.Fatal(err)
		}
		if m, _ := doc["model"].(string); info.Model != m {
			t.Fatalf("Info.Model = %q, want %q", info.Model, m)
		}
		if s, _ := doc["stream"].(bool); info.Stream != s {
			t.Fatalf("Info.Stream = %v, want %v", info.Stream, s)
		}
		sumOf := func(what string, b []byte) Sum {
			t.Helper()
			s, _, err := fp.Sum("openai", "chat.completions", b)
			if err != nil {
				t.Fatalf("%s: Sum rejects %q: %v", what, b, err)
			}
			return s
		}
		same := func(what string, b []byte) {
			t.Helper()
			if got := sumOf(what, b); got != sum {
				t.Fatalf("%s changes the fingerprint:\n%s\n%s", what, body, b)
			}
		}
		differ := func(what string, b []byte) {
			t.Helper()
			if got := sumOf(what, b); got == sum {
				t.Fatalf("%s keeps the fingerprint:\n%s\n%s", what, body, b)
			}
		}

		// (b) Re-encodings of the same document fingerprint the same.
		marshalled := mustMarshal(t, doc, true)
		same("json.Marshal through a map", marshalled)
		same("json.Marshal without HTML escaping", mustMarshal(t, doc, false))
		var indented bytes.Buffer
		if err := json.Indent(&indented, body, " ", "\t"); err != nil {
			t.Fatal(err)
		}
		same("json.Indent", indented.Bytes())
		same("escaping all non-ASCII", asciiOnly(marshalled))
		same("reversed key order", reversed(t, doc))

		// (c) Content changes change the fingerprint.
		if _, ok := doc["zz_fuzz_added"]; !ok {
			doc["zz_fuzz_added"] = json.Number("1")
			differ("adding a field", mustMarshal(t, doc, true))
			delete(doc, "zz_fuzz_added")
		}
		for _, k := range sortedKeys(doc) {
			if !slices.Contains(ExcludedFields[:], k) {
				v := doc[k]
				delete(doc, k)
				differ("removing a field", mustMarshal(t, doc, true))
				doc[k] = v
				break
			}
		}
		for _, k := range sortedKeys(doc) {
			if slices.Contains(ExcludedFields[:], k) {
				continue
			}
			old := doc[k]
			doc[k] = mutateLeaf(old, k == "model")
			differ("changing a leaf under "+strconv.Quote(k), mustMarshal(t, doc, true))
			doc[k] = old
		}

		// (d) Excluded fields do not count.
		for _, k := range ExcludedFields {
			old, had := doc[k]
			switch k {
			case "stream", "store":
				b, _ := old.(bool)
				doc[k] = !b
			case "stream_options", "metadata":
				doc[k] = map[string]any{"fuzz": "x"}
			default:
				doc[k] = "changed-by-fuzz"
			}
			same("changing excluded "+k, mustMarshal(t, doc, true))
			if had {
				delete(doc, k)
				same("removing excluded "+k, mustMarshal(t, doc, true))
				doc[k] = old
			} else {
				delete(doc, k)
			}
		}
	})
}

// oracleAccepts is the reference validator: encoding/json's grammar, an
// object at the top, plus the package's documented stricter rules, each
// checked independently of the package's parser.
func oracleAccepts(b []byte) bool {
	if !json.Valid(b) || !utf8.Valid(b) {
		return false
	}
	if t := bytes.TrimLeft(b, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return false
	}
	// In valid JSON every backslash is inside a string, so escapes can be
	// read without tokenising.
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		if b[i+1] != 'u' {
			i++
			continue
		}
		r, _ := strconv.ParseUint(string(b[i+2:i+6]), 16, 32)
		i += 5
		switch {
		case r >= 0xDC00 && r <= 0xDFFF:
			return false
		case r >= 0xD800 && r <= 0xDBFF:
			if i+6 >= len(b) || b[i+1] != '\\' || b[i+2] != 'u' {
				return false
			}
			lo, _ := strconv.ParseUint(string(b[i+3:i+7]), 16, 32)
			if lo < 0xDC00 || lo > 0xDFFF {
				return false
			}
			i += 6
		}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	type frame struct {
		keys     map[string]bool
		isObject bool
		wantKey  bool
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return false
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.isObject && top.wantKey {
			if d, ok := tok.(json.Delim); !ok || d != '}' {
				k := tok.(string)
				if top.keys[k] {
					return false
				}
				top.keys[k] = true
				top.wantKey = false
				continue
			}
		}
		if top != nil && top.isObject {
			top.wantKey = true
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{':
				stack = append(stack, &frame{keys: map[string]bool{}, isObject: true, wantKey: true})
			case '[':
				stack = append(stack, &frame{})
			default:
				stack = stack[:len(stack)-1]
				if len(stack) > 0 && stack[len(stack)-1].isObject {
					stack[len(stack)-1].wantKey = true
				}
				continue
			}
			if len(stack) > MaxDepth {
				return false
			}
		case json.Number:
			if e := strings.IndexAny(string(v), "eE"); e >= 0 {
				exp := strings.TrimLeft(string(v)[e+1:], "+-")
				if exp = strings.TrimLeft(exp, "0"); len(exp) > maxExponentDigits {
					return false
				}
			}
		}
	}
	var doc map[string]any
	dec = json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return false
	}
	if m, ok := doc["model"]; ok && m != nil {
		if _, ok := m.(string); !ok {
			return false
		}
	}
	if s, ok := doc["stream"]; ok && s != nil {
		if _, ok := s.(bool); !ok {
			return false
		}
	}
	return true
}

func mustMarshal(t *testing.T, v any, escapeHTML bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(escapeHTML)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// asciiOnly rewrites every non-ASCII character of encoded JSON (they only
// occur inside strings) as \u escapes, with surrogate pairs above U+FFFF.
func asciiOnly(b []byte) []byte {
	var out []byte
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if r < utf8.RuneSelf {
			out = append(out, b[0])
		} else if r > 0xFFFF {
			hi, lo := utf16.EncodeRune(r)
			out = append(out, `\u`+strconv.FormatInt(int64(hi), 16)+`\u`+strconv.FormatInt(int64(lo), 16)...)
		} else {
			out = append(out, `\u`+leftPad(strconv.FormatInt(int64(r), 16))...)
		}
		b = b[n:]
	}
	return out
}

func leftPad(h string) string { return strings.Repeat("0", 4-len(h)) + h }

// reversed encodes v with every object's keys in reverse sorted order.
func reversed(t *testing.T, v any) []byte {
	var buf bytes.Buffer
	var enc func(v any)
	enc = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			keys := sortedKeys(v)
			slices.Reverse(keys)
			buf.WriteByte('{')
			for i, k := range keys {
				if i > 0 {
					buf.WriteByte(',')
				}
				buf.Write(mustMarshal(t, k, false))
				buf.WriteByte(':')
				enc(v[k])
			}
			buf.WriteByte('}')
		case []any:
			buf.WriteByte('[')
			for i, e := range v {
				if i > 0 {
					buf.WriteByte(',')
				}
				enc(e)
			}
			buf.WriteByte(']')
		default:
			buf.Write(bytes.TrimSpace(mustMarshal(t, v, true)))
		}
	}
	enc(v)
	return buf.Bytes()
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// mutateLeaf returns a copy of v with its first leaf (in sorted key order)
// changed to a different value. Empty objects and arrays count as leaves.
// keepString keeps a string a string (for "model", which must stay one).
func mutateLeaf(v any, keepString bool) any {
	switch v := v.(type) {
	case map[string]any:
		keys := sortedKeys(v)
		if len(keys) == 0 {
			return json.Number("0")
		}
		c := make(map[string]any, len(v))
		for k, e := range v {
			c[k] = e
		}
		c[keys[0]] = mutateLeaf(v[keys[0]], false)
		return c
	case []any:
		if len(v) == 0 {
			return json.Number("0")
		}
		c := slices.Clone(v)
		c[0] = mutateLeaf(v[0], false)
		return c
	case string:
		return v + "x"
	case bool:
		return !v
	case json.Number:
		if strings.Trim(strings.SplitN(strings.ToLower(string(v)), "e", 2)[0], "-0.") == "" {
			return json.Number("1") // v is zero
		}
		return json.Number("0")
	case nil:
		if keepString {
			return "x"
		}
		return json.Number("0")
	}
	panic("unexpected JSON value")
}
