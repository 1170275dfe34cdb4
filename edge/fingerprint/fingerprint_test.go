package fingerprint

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
)

var (
	secretA = []byte("0123456789abcdef0123456789abcdef")
	secretB = []byte("fedcba9876543210fedcba9876543210")
)

func TestCanonical(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string
	}{
		{"empty object", `{}`, `{}`},
		{"whitespace", " \t\r\n{ \"b\" : 2 ,\n\"a\" :\t1 } \n", `{"a":1,"b":2}`},
		{"nested sort", `{"z":{"b":{"d":1,"c":2},"a":[]},"y":{}}`, `{"y":{},"z":{"a":[],"b":{"c":2,"d":1}}}`},
		{"array order kept", `{"a":[3,1,2,{"b":1,"a":2}]}`, `{"a":[3,1,2,{"a":2,"b":1}]}`},
		{"literals", `{"t":true,"f":false,"n":null}`, `{"f":false,"n":null,"t":true}`},
		{"key byte order", `{"é":1,"z":2,"Z":3,"a":4,"":5}`, `{"":5,"Z":3,"a":4,"z":2,"é":1}`},
		{"utf-8 not utf-16 order", `{"😀":1,"｡":2}`, `{"｡":2,"😀":1}`},
		{"escaped key sorts decoded", `{"\u00e9":1,"f":2}`, `{"f":2,"é":1}`},
		{"escaped key rewritten", `{"a\/b\u0041":1}`, `{"a/bA":1}`},
		{"escaped key keeps needed escapes", `{"\u0001\"\\\n\u00e9":1}`, `{"\u0001\"\\\né":1}`},

		{"int", `{"n":1}`, `{"n":1}`},
		{"1.0", `{"n":1.0}`, `{"n":1}`},
		{"1e0", `{"n":1e0}`, `{"n":1}`},
		{"10e-1", `{"n":10e-1}`, `{"n":1}`},
		{"0.1e1", `{"n":0.1e1}`, `{"n":1}`},
		{"1E+2", `{"n":1E+2}`, `{"n":100}`},
		{"negative zero", `{"n":-0}`, `{"n":0}`},
		{"zero spellings", `{"n":[0.0,-0.000,0e99,0E-5]}`, `{"n":[0,0,0,0]}`},
		{"fraction", `{"n":123.4560}`, `{"n":123.456}`},
		{"negative fraction", `{"n":-12.50e-3}`, `{"n":-0.0125}`},
		{"small plain", `{"n":0.000001}`, `{"n":0.000001}`},
		{"small exp", `{"n":0.0000001}`, `{"n":1e-7}`},
		{"small exp digits", `{"n":0.0000001234}`, `{"n":1.234e-7}`},
		{"1e20 plain", `{"n":1e20}`, `{"n":100000000000000000000}`},
		{"1e21 exp", `{"n":1e21}`, `{"n":1e+21}`},
		{"big int exact", `{"n":9007199254740993}`, `{"n":9007199254740993}`},
		{"huge int exact", `{"n":123456789012345678901234567890}`, `{"n":1.2345678901234567890123456789e+29}`},
		{"long fraction exact", `{"n":0.10000000000000000000000000001}`, `{"n":0.10000000000000000000000000001}`},
		{"big exponent", `{"n":1.5e300}`, `{"n":1.5e+300}`},
		{"exponent leading zeros", `{"n":1e0000000000000000002}`, `{"n":100}`},
		{"max exponent", `{"n":-2.5e-999999999}`, `{"n":-2.5e-999999999}`},

		{"plain string", `{"s":"hello <b>&amp;</b> ☃"}`, `{"s":"hello <b>&amp;</b> ☃"}`},
		{"unicode escape", `{"s":"\u00e9\u2603"}`, `{"s":"é☃"}`},
		{"surrogate pair", `{"s":"\ud83d\ude00"}`, `{"s":"😀"}`},
		{"solidus", `{"s":"a\/b"}`, `{"s":"a/b"}`},
		{"escaped backslash before u", `{"s":"a\\u0041\\\/"}`, `{"s":"a\\u0041\\/"}`},
		{"mixed escapes", `{"s":"x\n\u0041\ty\/z\u00e9"}`, `{"s":"x\nA\ty/zé"}`},
		{"short escapes", `{"s":"\b\f\n\r\t\"\\"}`, `{"s":"\b\f\n\r\t\"\\"}`},
		{"short escapes from \\u", `{"s":"\u0008\u000C\u000a\u000D\u0009\u0022\u005C"}`, `{"s":"\b\f\n\r\t\"\\"}`},
		{"control lower hex", `{"s":"\u001F\u0000\u007f"}`, `{"s":"\u001f\u0000` + "\x7f" + `"}`},
		{"line separator raw", `{"s":"\u2028"}`, "{\"s\":\"\u2028\"}"},

		{"excluded top-level", `{"stream":true,"stream_options":{"include_usage":true},"user":"u","safety_identifier":"s","prompt_cache_key":"k","metadata":{"a":1},"store":false,"model":"m"}`, `{"model":"m"}`},
		{"excluded only", `{"stream":false}`, `{}`},
		{"excluded names count when nested", `{"a":{"stream":true,"user":"x"},"b":[{"metadata":1}]}`, `{"a":{"stream":true,"user":"x"},"b":[{"metadata":1}]}`},
		{"escaped excluded key", `{"us\u0065r":"x","model":"m"}`, `{"model":"m"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Canonical([]byte(tt.in))
			if err != nil {
				t.Fatalf("Canonical: %v", err)
			}
			if string(got) != tt.want {
				t.Fatalf("Canonical =\n%s\nwant\n%s", got, tt.want)
			}
			// The canonical form is a fixed point.
			again, err := Canonical(got)
			if err != nil || !bytes.Equal(again, got) {
				t.Fatalf("canonical form is not stable: %s, %v", again, err)
			}
		})
	}
}

// reasons are all the texts an Error may carry; the fuzz test checks that an
// error is one of them, which proves no content reaches the message.
var reasons = []string{
	"body of 2 GiB or more",
	"too many objects and members",
	"empty body",
	"body is not a JSON object",
	"data after the JSON object",
	"unexpected end of body",
	"invalid character where a value is expected",
	"invalid literal",
	fmt.Sprintf("nesting deeper than %d", MaxDepth),
	"unexpected end of body in array",
	"expected ',' or ']' in array",
	"expected a string key in object",
	"expected ':' after object key",
	"unexpected end of body in object",
	"expected ',' or '}' in object",
	"duplicate object key",
	"unterminated string",
	"control character in string",
	"invalid UTF-8 in string",
	"unterminated escape",
	"invalid \\u escape",
	"lone surrogate in \\u escape",
	"invalid escape",
	"invalid number",
	"number exponent out of range",
	`"model" is not a string`,
	`"stream" is not a boolean`,
}

func TestErrors(t *testing.T) {
	t.Parallel()
	deep := func(n int) string { return strings.Repeat(`{"a":`, n) + "1" + strings.Repeat("}", n) }
	deepArr := func(n int) string { return `{"a":` + strings.Repeat("[", n-1) + strings.Repeat("]", n-1) + "}" }
	tests := []struct {
		name   string
		in     string
		offset int
		reason string
	}{
		{"empty", ``, 0, "empty body"},
		{"blank", "  \n", 3, "empty body"},
		{"array", `[]`, 0, "body is not a JSON object"},
		{"string", ` "x"`, 1, "body is not a JSON object"},
		{"BOM", "\xef\xbb\xbf{}", 0, "body is not a JSON object"},
		{"trailing data", `{"a":1} x`, 8, "data after the JSON object"},
		{"two objects", `{"a":1}{}`, 7, "data after the JSON object"},
		{"duplicate", `{"a":1,"a":2}`, 7, "duplicate object key"},
		{"duplicate after decoding", `{"a":1,"\u0061":2}`, 7, "duplicate object key"},
		{"duplicate of escaped key", `{"\u0061":1,"a":2}`, 12, "duplicate object key"},
		{"nested duplicate", `{"x":{"b":1,"c":2,"b":3}}`, 18, "duplicate object key"},
		{"trailing comma", `{"a":1,}`, 7, "expected a string key in object"},
		{"unquoted key", `{a:1}`, 1, "expected a string key in object"},
		{"missing colon", `{"a" 1}`, 5, "expected ':' after object key"},
		{"missing comma", `{"a":1 "b":2}`, 7, "expected ',' or '}' in object"},
		{"leading zero", `{"a":01}`, 6, "expected ',' or '}' in object"},
		{"bare dot", `{"a":1.}`, 5, "invalid number"},
		{"no int part", `{"a":.5}`, 5, "invalid character where a value is expected"},
		{"plus sign", `{"a":+1}`, 5, "invalid character where a value is expected"},
		{"empty exponent", `{"a":1e}`, 5, "invalid number"},
		{"minus only", `{"a":-}`, 5, "invalid number"},
		{"exponent too long", `{"a":1e1000000000}`, 5, "number exponent out of range"},
		{"NaN", `{"a":NaN}`, 5, "invalid character where a value is expected"},
		{"bad literal", `{"a":tru}`, 5, "invalid literal"},
		{"truncated literal", `{"a":nul`, 5, "invalid literal"},
		{"control char", "{\"a\":\"x\x01\"}", 7, "control character in string"},
		{"raw newline", "{\"a\":\"x\ny\"}", 7, "control character in string"},
		{"invalid utf-8", "{\"a\":\"\xff\"}", 6, "invalid UTF-8 in string"},
		{"utf-8 surrogate", "{\"a\":\"\xed\xa0\x80\"}", 6, "invalid UTF-8 in string"},
		{"truncated utf-8", "{\"a\":\"\xe2\x98\"}", 6, "invalid UTF-8 in string"},
		{"invalid utf-8 key", "{\"\xc0\xaf\":1}", 2, "invalid UTF-8 in string"},
		{"lone high surrogate", `{"a":"\ud800"}`, 6, "lone surrogate in \\u escape"},
		{"lone low surrogate", `{"a":"\udc00"}`, 6, "lone surrogate in \\u escape"},
		{"high then non-low", `{"a":"\ud800\u0041"}`, 6, "lone surrogate in \\u escape"},
		{"bad escape", `{"a":"\x"}`, 6, "invalid escape"},
		{"short \\u", `{"a":"\u12"}`, 6, "invalid \\u escape"},
		{"unterminated string", `{"a":"abc`, 5, "unterminated string"},
		{"unterminated key", `{"abc`, 1, "unterminated string"},
		{"unterminated escape", `{"a":"\`, 6, "unterminated escape"},
		{"unclosed array", `{"a":[1,2`, 9, "unexpected end of body in array"},
		{"bad array sep", `{"a":[1,2}`, 9, "expected ',' or ']' in array"},
		{"unclosed object", `{"a":1`, 6, "unexpected end of body in object"},
		{"missing value", `{"a":`, 5, "unexpected end of body"},
		{"too deep", deep(MaxDepth + 1), 5 * MaxDepth, fmt.Sprintf("nesting deeper than %d", MaxDepth)},
		{"too deep arrays", deepArr(MaxDepth + 1), 5 + MaxDepth - 1, fmt.Sprintf("nesting deeper than %d", MaxDepth)},
		{"model number", `{"model":5}`, 9, `"model" is not a string`},
		{"model object", `{"model":{"a":"gpt"}}`, 9, `"model" is not a string`},
		{"stream string", `{"stream":"yes"}`, 10, `"stream" is not a boolean`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Scan([]byte(tt.in))
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Scan error = %v, want *Error", err)
			}
			if e.Offset != tt.offset || e.Reason != tt.reason {
				t.Fatalf("Scan error = %d %q, want %d %q", e.Offset, e.Reason, tt.offset, tt.reason)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatal("error does not wrap ErrInvalid")
			}
			if _, err2 := Canonical([]byte(tt.in)); err2 == nil || err2.Error() != err.Error() {
				t.Fatalf("Canonical error %v differs from Scan error %v", err2, err)
			}
			f := New(secretA)
			if _, _, err3 := f.Sum("openai", "chat.completions", []byte(tt.in)); err3 == nil || err3.Error() != err.Error() {
				t.Fatalf("Sum error %v differs from Scan error %v", err3, err)
			}
		})
	}
	for _, n := range []int{MaxDepth} {
		if _, err := Scan([]byte(deep(n))); err != nil {
			t.Errorf("depth %d rejected: %v", n, err)
		}
		if _, err := Scan([]byte(deepArr(n))); err != nil {
			t.Errorf("array depth %d rejected: %v", n, err)
		}
	}
}

func TestMaxIndexed(t *testing.T) {
	t.Parallel()
	body := func(objects int) []byte {
		return []byte(`{"a":[` + strings.Repeat(`{},`, objects-1) + `{}]}`)
	}
	// The root object, its member "a" and the objects in the array.
	if _, err := Scan(body(MaxIndexed - 2)); err != nil {
		t.Fatalf("body at the limit: %v", err)
	}
	_, err := Scan(body(MaxIndexed - 1))
	var e *Error
	if !errors.As(err, &e) || e.Reason != "too many objects and members" {
		t.Fatalf("body over the limit: %v", err)
	}
}

func TestScanInfo(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want Info
	}{
		{`{}`, Info{}},
		{`{"model":"gpt-4o","stream":true}`, Info{Model: "gpt-4o", Stream: true}},
		{`{"model":"claude-\u0033","stream":false}`, Info{Model: "claude-3"}},
		{`{"model":null,"stream":null}`, Info{}},
		{`{"stream":true,"stream_options":{"include_usage":true}}`, Info{Stream: true, HasStreamOptions: true, IncludeUsage: true}},
		{`{"stream_options":{"include_usage":false}}`, Info{HasStreamOptions: true}},
		{`{"stream_options":null}`, Info{}},
		{`{"stream_options":{}}`, Info{HasStreamOptions: true}},
		{`{"stream_options":{"include_usage":"yes"}}`, Info{HasStreamOptions: true}},
		{`{"a":{"model":"nested","stream":true}}`, Info{}},
		{`{"str\u0065am":true}`, Info{Stream: true}},
		{`{"max_tokens":100}`, Info{MaxOutputTokens: 100}},
		{`{"max_tokens":10,"max_completion_tokens":2.5e2,"max_output_tokens":99}`, Info{MaxOutputTokens: 250}},
		{`{"max_output_tokens":0.1}`, Info{MaxOutputTokens: 1}},
		{`{"max_tokens":1e300}`, Info{MaxOutputTokens: 1 << 40}},
		{`{"max_tokens":-5,"max_completion_tokens":"7","max_output_tokens":null}`, Info{}},
		{`{"max_tokens":0,"a":{"max_tokens":9}}`, Info{}},
	}
	for _, tt := range tests {
		got, err := Scan([]byte(tt.in))
		if err != nil {
			t.Errorf("Scan(%s): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("Scan(%s) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

// refSum computes the fingerprint the slow way, from Canonical's output.
func refSum(t testing.TB, secret []byte, provider, endpoint string, body []byte) Sum {
	t.Helper()
	c, err := Canonical(body)
	if err != nil {
		t.Fatal(err)
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(domain))
	mac.Write(binary.AppendUvarint(nil, uint64(len(provider))))
	mac.Write([]byte(provider))
	mac.Write(binary.AppendUvarint(nil, uint64(len(endpoint))))
	mac.Write([]byte(endpoint))
	mac.Write(c)
	var s Sum
	copy(s[:], mac.Sum(nil))
	return s
}

func TestSumMatchesCanonical(t *testing.T) {
	t.Parallel()
	f := New(secretA)
	bodies := [][]byte{
		[]byte(`{}`),
		[]byte(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`),
		chatBody(2 << 10),
		chatBody(64 << 10),
		// Long strings and escapes cross the 4 KiB staging buffer.
		[]byte(`{"a":"` + strings.Repeat("x", 5000) + `","b":"` + strings.Repeat(`\u00e9\n`, 3000) + `","c":` + strings.Repeat("1", 3000) + `}`),
	}
	for _, b := range bodies {
		for range 3 { // pooled state is reused correctly
			got, _, err := f.Sum("openai", "chat.completions", b)
			if err != nil {
				t.Fatal(err)
			}
			if want := refSum(t, secretA, "openai", "chat.completions", b); got != want {
				t.Fatalf("Sum of %d-byte body = %s, want %s", len(b), got, want)
			}
		}
	}
}

func TestSumEquivalence(t *testing.T) {
	t.Parallel()
	f := New(secretA)
	sum := func(s string) Sum {
		t.Helper()
		got, _, err := f.Sum("openai", "chat.completions", []byte(s))
		if err != nil {
			t.Fatalf("Sum(%s): %v", s, err)
		}
		return got
	}
	same := [][2]string{
		{`{"a":1,"b":2}`, "{ \"b\" : 2,\n \"a\" : 1 }"},
		{`{"t":1}`, `{"t":1.0e0}`},
		{`{"s":"é"}`, `{"s":"\u00e9"}`},
		{`{"s":"a/b<"}`, `{"s":"a\/b\u003c"}`},
		{`{"model":"m"}`, `{"model":"m","stream":true,"stream_options":{"include_usage":true}}`},
		{`{"model":"m","user":"a"}`, `{"model":"m","user":"b","metadata":{"x":"y"},"store":true}`},
		{`{"model":"m","safety_identifier":"a","prompt_cache_key":"p"}`, `{"model":"m"}`},
	}
	for _, p := range same {
		if sum(p[0]) != sum(p[1]) {
			t.Errorf("%s and %s fingerprint differently", p[0], p[1])
		}
	}
	different := [][2]string{
		{`{"t":1}`, `{"t":1.1}`},
		{`{"t":1}`, `{"t":"1"}`},
		{`{"t":9007199254740992}`, `{"t":9007199254740993}`},
		{`{"s":"a"}`, `{"s":"A"}`},
		{`{"a":[1,2]}`, `{"a":[2,1]}`},
		{`{"a":1}`, `{"a":1,"b":null}`},
		{`{"a":{}}`, `{"a":[]}`},
		{`{"a":{"user":1}}`, `{"a":{"user":2}}`},
		{`{"model":"a"}`, `{"model":"b"}`},
		{`{"a":null}`, `{"a":false}`},
		{`{"a":"x","b":"y"}`, `{"a":"xb","":"y"}`},
	}
	for _, p := range different {
		if sum(p[0]) == sum(p[1]) {
			t.Errorf("%s and %s fingerprint the same", p[0], p[1])
		}
	}
}

func TestSumKeyedAndFramed(t *testing.T) {
	t.Parallel()
	body := chatBody(2 << 10)
	a, b := New(secretA), New(secretB)
	sa, _, err := a.Sum("openai", "chat.completions", body)
	if err != nil {
		t.Fatal(err)
	}
	sb, _, _ := b.Sum("openai", "chat.completions", body)
	if sa == sb {
		t.Error("different secrets give the same fingerprint")
	}
	// The secret is copied: changing the caller's slice changes nothing.
	secret := append([]byte(nil), secretA...)
	c := New(secret)
	secret[0] ^= 1
	if sc, _, _ := c.Sum("openai", "chat.completions", body); sc != sa {
		t.Error("New does not copy the secret")
	}
	seen := map[Sum][2]string{}
	for _, pe := range [][2]string{
		{"openai", "chat.completions"},
		{"anthropic", "chat.completions"},
		{"openai", "responses"},
		{"openai", "chat.completionsx"},
		{"ab", "c"},
		{"a", "bc"},
		{"", "abc"},
		{"abc", ""},
	} {
		s, _, err := a.Sum(pe[0], pe[1], body)
		if err != nil {
			t.Fatal(err)
		}
		if prev, ok := seen[s]; ok {
			t.Errorf("%q and %q fingerprint the same", prev, pe)
		}
		seen[s] = pe
	}
}

func TestSumWith(t *testing.T) {
	f := New(secretA)
	body := chatBody(2 << 10)
	plain, _, _ := f.Sum("openai", "chat.completions", body)
	if s, _, _ := f.SumWith("openai", "chat.completions", nil, body); s != plain {
		t.Error("SumWith without extra bytes differs from Sum")
	}
	seen := map[Sum]string{plain: "none"}
	for _, extra := range []string{"a", "b", "ab", "\x00", strings.Repeat("d", 32)} {
		s, _, err := f.SumWith("openai", "chat.completions", []byte(extra), body)
		if err != nil {
			t.Fatal(err)
		}
		if prev, ok := seen[s]; ok {
			t.Errorf("extra %q fingerprints as %q", extra, prev)
		}
		seen[s] = extra
	}
	// The extra bytes are framed: they cannot stand in for the body's.
	mac := hmac.New(sha256.New, secretA)
	mac.Write([]byte(domain))
	for _, f := range []string{"openai", "chat.completions"} {
		mac.Write(binary.AppendUvarint(nil, uint64(len(f))))
		mac.Write([]byte(f))
	}
	mac.Write([]byte{extraMark, 3})
	mac.Write([]byte("xyz"))
	c, _ := Canonical([]byte(`{"a":1}`))
	mac.Write(c)
	var want Sum
	copy(want[:], mac.Sum(nil))
	if got, _, _ := f.SumWith("openai", "chat.completions", []byte("xyz"), []byte(`{"a":1}`)); got != want {
		t.Errorf("SumWith = %s, want the documented MAC input's %s", got, want)
	}
}

func TestSumString(t *testing.T) {
	t.Parallel()
	var s Sum
	s[0], s[31] = 0xab, 0x01
	if got := s.String(); got != "ab"+strings.Repeat("0", 60)+"01" {
		t.Fatalf("String = %s", got)
	}
}

func TestNewRejectsShortSecret(t *testing.T) {
	t.Parallel()
	defer func() {
		if recover() == nil {
			t.Fatal("New accepted a 15-byte secret")
		}
	}()
	New(make([]byte, MinSecretLen-1))
}

func TestSumConcurrent(t *testing.T) {
	t.Parallel()
	f := New(secretA)
	bodies := [][]byte{chatBody(1 << 10), chatBody(8 << 10), []byte(`{"model":"x"}`)}
	want := make([]Sum, len(bodies))
	for i, b := range bodies {
		want[i] = refSum(t, secretA, "openai", "responses", b)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for n := range 200 {
				i := (g + n) % len(bodies)
				got, _, err := f.Sum("openai", "responses", bodies[i])
				if err != nil || got != want[i] {
					t.Errorf("concurrent Sum = %s, %v", got, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// chatBody returns a chat completion request of about size bytes, shaped
// like what SDKs send: a system prompt, a conversation, tools, sampling
// parameters and streaming options.
func chatBody(size int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"temperature":0.7,"max_tokens":1024,"top_p":1,` +
		`"tools":[{"type":"function","function":{"name":"get_weather","description":"Get the current weather for a city.","parameters":{"type":"object","properties":{"city":{"type":"string","description":"City name, e.g. Zürich"},"unit":{"type":"string","enum":["celsius","fahrenheit"]}},"required":["city"]}}}],` +
		`"messages":[{"role":"system","content":"You are a helpful assistant. Answer briefly and cite sources when you can."}`)
	// Mostly English, with some escapes and non-ASCII text as in real
	// prompts.
	words := []string{"the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "and", "then", "asks", "about", "a", "naïve", "question", "in", "a", "café", "with", "\\\"quoted\\\"", "text", "and", "a", "line\\nbreak", "or", "日本語", "1.5", "<tag>", "again"}
	for i := 0; b.Len() < size-200; i++ {
		role := "user"
		if i%2 == 1 {
			role = "assistant"
		}
		fmt.Fprintf(&b, `,{"role":%q,"content":"`, role)
		for w := 0; w < 60 && b.Len() < size-120; w++ {
			b.WriteString(words[(i*7+w)%len(words)])
			b.WriteByte(' ')
		}
		b.WriteString(`"}`)
	}
	b.WriteString(`],"user":"user-1234"}`)
	return b.Bytes()
}

func BenchmarkSum(b *testing.B) {
	for _, size := range []int{2 << 10, 64 << 10} {
		body := chatBody(size)
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			f := New(secretA)
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, _, err := f.Sum("openai", "chat.completions", body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkScan(b *testing.B) {
	for _, size := range []int{2 << 10, 64 << 10} {
		body := chatBody(size)
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, err := Scan(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSumNumbers fingerprints a body that is mostly numbers, in the
// spellings canonicalisation rewrites: an embedding-like array of floats,
// integers, exponents and trailing zeros.
func BenchmarkSumNumbers(b *testing.B) {
	spellings := []string{"0.0123456789", "-0.98765", "1234", "-7", "1.50", "2.5e-7", "-3E+22", "0", "100e-2", "0.000001"}
	var body bytes.Buffer
	body.WriteString(`{"model":"text-embedding-3-small","input":[`)
	for i := range 2000 {
		if i > 0 {
			body.WriteByte(',')
		}
		body.WriteString(spellings[i%len(spellings)])
	}
	body.WriteString(`]}`)
	f := New(secretA)
	b.ReportAllocs()
	b.SetBytes(int64(body.Len()))
	for b.Loop() {
		if _, _, err := f.Sum("openai", "embeddings", body.Bytes()); err != nil {
			b.Fatal(err)
		}
	}
}
