package provider_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/persiv/codex/edge/fingerprint"
	"github.com/persiv/codex/edge/provider"
	"github.com/persiv/codex/edge/provider/anthropic"
	"github.com/persiv/codex/edge/provider/openai"
)

// shape is one request shape that takes a system instruction.
type shape struct {
	name string
	f    provider.Format
	ep   provider.Endpoint
}

var shapes = []shape{
	{"chat", openai.Format{}, openai.ChatCompletions},
	{"responses", openai.Format{}, openai.Responses},
	{"messages", anthropic.Format{}, anthropic.Messages},
	{"count_tokens", anthropic.Format{}, anthropic.CountTokens},
}

func TestInjectSystem(t *testing.T) {
	mem := provider.NewSystem("Be brief.\n\"Quote\" <b>")
	const q = `"Be brief.\n\"Quote\" <b>"`
	cases := []struct {
		shape    int
		in, want string // want "" means the body is sent as it is
	}{
		// Chat: a leading system message, before the client's own.
		{0, `{"model":"m","messages":[{"role":"user","content":"hi"}]}`,
			`{"model":"m","messages":[{"role":"system","content":` + q + `},{"role":"user","content":"hi"}]}`},
		{0, `{"messages":[ {"role":"system","content":"mine"} ] ,"model":"m"}`,
			`{"messages":[{"role":"system","content":` + q + `}, {"role":"system","content":"mine"} ] ,"model":"m"}`},
		{0, `{"model":"m","messages":[ ]}`, `{"model":"m","messages":[{"role":"system","content":` + q + `} ]}`},
		{0, `{"\u006dessages":[]}`, `{"\u006dessages":[{"role":"system","content":` + q + `}]}`},
		{0, `{"model":"m"}`, ""},
		{0, `{"model":"m","messages":"hi"}`, ""},
		// Responses: the front of instructions.
		{1, `{"model":"m","input":"hi"}`, `{"instructions":` + q + `,"model":"m","input":"hi"}`},
		{1, `{}`, `{"instructions":` + q + `}`},
		{1, ` { "instructions" : "Mine.\u00e9" }`, ` { "instructions" : "Be brief.\n\"Quote\" <b>\n\nMine.\u00e9" }`},
		{1, `{"instructions":"","input":"x"}`, `{"instructions":` + q + `,"input":"x"}`},
		{1, `{"instructions":null}`, `{"instructions":` + q + `}`},
		{1, `{"instructions":5}`, ""},
		// Messages: the front of system, string or blocks; the client's
		// cache_control blocks are left exactly as they were.
		{2, `{"model":"m","messages":[]}`, `{"system":` + q + `,"model":"m","messages":[]}`},
		{2, `{"system":"Mine","messages":[]}`, `{"system":"Be brief.\n\"Quote\" <b>\n\nMine","messages":[]}`},
		{2, `{"system":[{"type":"text","text":"Mine","cache_control":{"type":"ephemeral"}}],"messages":[]}`,
			`{"system":[{"type":"text","text":` + q + `},{"type":"text","text":"Mine","cache_control":{"type":"ephemeral"}}],"messages":[]}`},
		{2, `{"system":[],"messages":[]}`, `{"system":[{"type":"text","text":` + q + `}],"messages":[]}`},
		{2, `{"system":{"type":"text"}}`, ""},
		{3, `{"model":"m","system":"Mine","messages":[]}`, `{"model":"m","system":"Be brief.\n\"Quote\" <b>\n\nMine","messages":[]}`},
	}
	for _, c := range cases {
		sh := shapes[c.shape]
		out, ok, err := sh.f.InjectSystem(sh.ep, []byte(c.in), mem)
		if err != nil {
			t.Errorf("%s %s: %v", sh.name, c.in, err)
			continue
		}
		if c.want == "" {
			if ok || string(out) != c.in {
				t.Errorf("%s %s: injected %s, want the body as it is", sh.name, c.in, out)
			}
			continue
		}
		if !ok || string(out) != c.want {
			t.Errorf("%s %s:\n got %s (ok %v)\nwant %s", sh.name, c.in, out, ok, c.want)
		}
		if _, err := fingerprint.Scan(out); err != nil {
			t.Errorf("%s %s: output is not valid: %v", sh.name, c.in, err)
		}
	}
}

func TestInjectSystemNothingToDo(t *testing.T) {
	mem := provider.NewSystem("memory")
	body := []byte(`{"model":"text-embedding-3-small","input":"hi"}`)
	for _, c := range []struct {
		f  provider.Format
		ep provider.Endpoint
	}{{openai.Format{}, openai.Embeddings}, {openai.Format{}, openai.Models}, {anthropic.Format{}, anthropic.Models}} {
		if out, ok, err := c.f.InjectSystem(c.ep, body, mem); ok || err != nil || !bytes.Equal(out, body) {
			t.Errorf("%s: %s %v %v", c.ep, out, ok, err)
		}
	}
	if out, ok, _ := (openai.Format{}).InjectSystem(openai.ChatCompletions, []byte(`{"messages":[]}`), provider.System{}); ok || string(out) != `{"messages":[]}` {
		t.Errorf("the zero System injected: %s", out)
	}
}

func TestInjectSystemMalformed(t *testing.T) {
	mem := provider.NewSystem("memory")
	for _, in := range []string{``, `[]`, `{`, `{"system"}`, `{"system":"a"`, `{"system":"a"} x`, `{"system":"a",}`,
		`{"system":"a" "model":"m"}`, `{"system":"a","system":"b"}`, `{"system":[`, `{"a":"\"}`} {
		for _, sh := range shapes {
			if out, ok, err := sh.f.InjectSystem(sh.ep, []byte(in), mem); ok && err == nil {
				if _, serr := fingerprint.Scan(out); serr == nil {
					t.Errorf("%s %q: injection made a malformed body valid: %s", sh.name, in, out)
				}
			}
		}
	}
}

// FuzzInjectSystem checks, for arbitrary bodies and texts in every shape:
// no panic; a valid body stays valid and keeps everything the client sent,
// with the text in the one place the provider reads it from; a body left
// alone has no such place; and a malformed body never comes out valid.
func FuzzInjectSystem(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"m","input":"hi","instructions":"Mine \u00e9"}`,
		`{"system":[{"type":"text","text":"Mine","cache_control":{"type":"ephemeral"}}],"messages":[]}`,
		`{"system":"Mine","messages":[],"x":[1,{"system":2}]}`,
		`{"system":null,"instructions":"","messages":[ ]}`,
		`{"\u0073ystem":"a"}`,
		`{"system":nul}`,
		`{}`, `[]`, `{"a":"\"}`,
	} {
		f.Add([]byte(s), "Be brief.")
	}
	f.Add([]byte(`{"messages":[]}`), "line\nbreak \"q\" \u2028 <tag> \\")
	f.Fuzz(func(t *testing.T, body []byte, text string) {
		if text == "" || !utf8.ValidString(text) {
			return // memories are non-empty UTF-8
		}
		mem := provider.NewSystem(text)
		_, scanErr := fingerprint.Scan(body)
		for _, sh := range shapes {
			out, ok, err := sh.f.InjectSystem(sh.ep, body, mem)
			if !ok {
				if !bytes.Equal(out, body) {
					t.Fatalf("%s: not injected, but the body changed", sh.name)
				}
			}
			if scanErr != nil {
				if ok && err == nil {
					if _, err := fingerprint.Scan(out); err == nil {
						t.Fatalf("%s: malformed %q came out valid: %s", sh.name, body, out)
					}
				}
				continue
			}
			if err != nil {
				t.Fatalf("%s: valid body %s refused: %v", sh.name, body, err)
			}
			if _, err := fingerprint.Scan(out); err != nil {
				t.Fatalf("%s: %s became invalid %s: %v", sh.name, body, out, err)
			}
			checkInjected(t, sh.name, decode(t, body), decode(t, out), text, ok)
		}
	})
}

func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return m
}

// checkInjected compares the client's body with the one sent: the field
// the shape injects into holds the text then the client's value, and no
// other field changed.
func checkInjected(t *testing.T, shape string, in, out map[string]any, text string, ok bool) {
	t.Helper()
	field := map[string]string{"chat": "messages", "responses": "instructions", "messages": "system", "count_tokens": "system"}[shape]
	cv, present := in[field]
	if !ok {
		if !reflect.DeepEqual(in, out) {
			t.Fatalf("%s: not injected, but the body differs", shape)
		}
		// Only a value of a type the provider would refuse is left alone.
		_, isArr := cv.([]any)
		_, isStr := cv.(string)
		switch {
		case shape == "chat" && isArr,
			shape != "chat" && (isStr || cv == nil),
			field == "system" && isArr:
			t.Fatalf("%s: %s is %T, yet nothing was injected", shape, field, cv)
		}
		return
	}
	sent := out[field]
	for k := range out {
		if k != field && !reflect.DeepEqual(in[k], out[k]) {
			t.Fatalf("%s: field %q changed", shape, k)
		}
	}
	if len(out) != len(in) && !(len(out) == len(in)+1 && !present) {
		t.Fatalf("%s: fields added or lost", shape)
	}
	switch v := cv.(type) {
	case []any:
		arr, isArr := sent.([]any)
		if !isArr || len(arr) != len(v)+1 || !reflect.DeepEqual(arr[1:], v) {
			t.Fatalf("%s: the client's %s are not kept after the injected one", shape, field)
		}
		var want map[string]any
		if shape == "chat" {
			want = map[string]any{"role": "system", "content": text}
		} else {
			want = map[string]any{"type": "text", "text": text}
		}
		if !reflect.DeepEqual(arr[0], want) {
			t.Fatalf("%s: first element %v, want %v", shape, arr[0], want)
		}
	case string:
		want := text
		if v != "" {
			want = text + "\n\n" + v
		}
		if sent != want {
			t.Fatalf("%s: %s = %q, want %q", shape, field, sent, want)
		}
	case nil:
		if sent != text {
			t.Fatalf("%s: %s = %q, want the text", shape, field, sent)
		}
	default:
		t.Fatalf("%s: injected into a %T", shape, cv)
	}
}

func TestNewSystemKeepsText(t *testing.T) {
	for _, s := range []string{"a", "<b>&</b>", "\u2028\"\\\n", strings.Repeat("é", 100)} {
		var got string
		if err := json.Unmarshal(provider.NewSystem(s).Quoted(), &got); err != nil || got != s {
			t.Errorf("NewSystem(%q) = %s", s, provider.NewSystem(s).Quoted())
		}
	}
}

// BenchmarkInjectSystem measures the injection each request with a memory
// pays, on a 2 KiB conversation and a 1 KiB memory.
func BenchmarkInjectSystem(b *testing.B) {
	mem := provider.NewSystem(strings.Repeat("Answer in British English. ", 38))
	turn := strings.Repeat("lorem ipsum dolor sit amet ", 10)
	var msgs []string
	for range 7 {
		msgs = append(msgs, `{"role":"user","content":"`+turn+`"}`)
	}
	conv := `[` + strings.Join(msgs, ",") + `]`
	bodies := map[string]string{
		"chat":         `{"model":"gpt-4o-mini","messages":` + conv + `,"temperature":0.2}`,
		"responses":    `{"model":"gpt-4.1","input":` + conv + `,"instructions":"Be brief."}`,
		"messages":     `{"model":"claude-haiku-4-5","max_tokens":256,"system":[{"type":"text","text":"Be brief.","cache_control":{"type":"ephemeral"}}],"messages":` + conv + `}`,
		"count_tokens": `{"model":"claude-haiku-4-5","system":"Be brief.","messages":` + conv + `}`,
	}
	for _, sh := range shapes {
		body := []byte(bodies[sh.name])
		b.Run(sh.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, ok, err := sh.f.InjectSystem(sh.ep, body, mem); !ok || err != nil {
					b.Fatal(ok, err)
				}
			}
		})
	}
}

// BenchmarkIntakeWithMemory is intake's share of a request with and
// without a 1 KiB memory: the fingerprint of the client's body alone, or
// the fingerprint with the memory's digest and the injection.
func BenchmarkIntakeWithMemory(b *testing.B) {
	text := strings.Repeat("Answer in British English. ", 38)
	mem := provider.NewSystem(text)
	digest := sha256.Sum256([]byte(text))
	body := []byte(`{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello to the benchmark, please, in a few words."}],"max_tokens":32}`)
	fp := fingerprint.New([]byte("0123456789abcdef0123456789abcdef"))
	f := openai.Format{}
	b.Run("none", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := fp.Sum("openai", "chat.completions", body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("memory", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := fp.SumWith("openai", "chat.completions", digest[:], body); err != nil {
				b.Fatal(err)
			}
			if _, ok, err := f.InjectSystem(openai.ChatCompletions, body, mem); !ok || err != nil {
				b.Fatal(ok, err)
			}
		}
	})
}
