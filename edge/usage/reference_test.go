package usage

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// parseReference is Parse as it was before the member scanner: one
// json.Unmarshal of the whole body into the answer's struct. It is the
// specification Parse is held to.
func parseReference(k Kind, body []byte) (Result, error) {
	switch k {
	case OpenAIChat:
		var b chatChunk
		if err := json.Unmarshal(body, &b); err != nil {
			return Result{}, fmt.Errorf("parse %s: %w", k, err)
		}
		r := Result{Model: b.Model, ServiceTier: deref(b.ServiceTier)}
		if b.Usage != nil {
			b.Usage.apply(&r)
		}
		return r, nil
	case OpenAIResponses:
		var b openAIResponse
		if err := json.Unmarshal(body, &b); err != nil {
			return Result{}, fmt.Errorf("parse %s: %w", k, err)
		}
		var r Result
		b.apply(&r)
		return r, nil
	case NoUsage:
		var v map[string]json.RawMessage
		if err := json.Unmarshal(body, &v); err != nil {
			return Result{}, fmt.Errorf("parse %s: %w", k, err)
		}
		return Result{}, nil
	case AnthropicMessages:
		var b anthropicMessage
		if err := json.Unmarshal(body, &b); err != nil {
			return Result{}, fmt.Errorf("parse %s: %w", k, err)
		}
		var st anthropicState
		st.model = b.Model
		if b.Usage != nil {
			st.merge(b.Usage, true)
		}
		return st.result(), nil
	}
	return Result{}, fmt.Errorf("parse %s: %w", k, ErrUnsupported)
}

// FuzzParseMatchesReference holds Parse to parseReference on any input:
// the same error or not, and the same Result. This is stricter than
// needed, and deliberate: the scanner checks skipped values as strictly as
// encoding/json does (see scanner), so Parse errs exactly when the
// reference does, and on error both return the zero Result.
func FuzzParseMatchesReference(f *testing.F) {
	seedRecorded(f)
	seedReference(f)
	f.Fuzz(func(t *testing.T, pair uint8, _ string, body []byte) {
		matchReference(t, kinds[int(pair)%len(kinds)], body)
	})
}

func matchReference(t *testing.T, k Kind, body []byte) {
	t.Helper()
	want, wantErr := parseReference(k, body)
	got, err := Parse(k, body)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("Parse(%s, %q): error %v, reference error %v", k, body, err, wantErr)
	}
	if err != nil && got != (Result{}) {
		t.Fatalf("Parse(%s, %q) failed with a non-zero Result %+v", k, body, got)
	}
	if got != want {
		t.Fatalf("Parse(%s, %q) =\n %+v\nreference\n %+v", k, body, got, want)
	}
}

// referenceCases are bodies that probe where a member scanner could part
// from encoding/json: names matched case-insensitively or with escapes,
// duplicate members, nulls, wrong types, malformed input inside values
// Parse skips, and nesting at encoding/json's limit.
var referenceCases = []string{
	``,
	` `,
	`null`,
	` null `,
	`nul`,
	`nullx`,
	`{}`,
	` { } `,
	`{}x`,
	`{} {}`,
	`[]`,
	`"s"`,
	`7`,
	`true`,
	`{`,
	`{"a"}`,
	`{"a":}`,
	`{"a":1,}`,
	`{,"a":1}`,
	`{"a":1 "b":2}`,
	`{"a" 1}`,
	`{a:1}`,
	`{"model":"m"}`,
	`{"MODEL":"m"}`,
	`{"Model":"a","model":"b"}`,
	`{"\u006dodel":"m","\u0055sage":{"prompt_tokens":1,"input_tokens":1}}`,
	"{\"\u017fervice_tier\":\"flex\"}",
	`{"\u017Fervice_tier":"flex","u\u017Fage":{"input_tokens":2}}`,
	`{"model":"m\u00e9","service_tier":"fl\nex"}`,
	"{\"model\":\"m\xff\xfe\"}",
	"{\"model\":\"a\tb\"}",
	`{"model":"\ud800"}`,
	`{"model":null}`,
	`{"model":"a","model":null}`,
	`{"model":5}`,
	`{"model":{}}`,
	`{"service_tier":"flex","service_tier":null}`,
	`{"service_tier":1}`,
	`{"usage":null}`,
	`{"usage":{}}`,
	`{"usage":[]}`,
	`{"usage":"x"}`,
	`{"usage":{"prompt_tokens":1},"usage":{"completion_tokens":2}}`,
	`{"usage":{"prompt_tokens":1},"usage":null}`,
	`{"usage":{"input_tokens":1,"server_tool_use":{"web_search_requests":1}},"usage":{"server_tool_use":{"web_fetch_requests":2}}}`,
	`{"usage":{"input_tokens":1,"iterations":[{"type":"compaction","input_tokens":2}]},"usage":{"iterations":[{}]}}`,
	`{"usage":{"prompt_tokens":1e3,"completion_tokens":-1,"prompt_tokens_details":{"cached_tokens":01}}}`,
	`{"usage":{"PROMPT_TOKENS":5,"prompt_tokens":7,"Completion_Tokens":"3","total_tokens":8}}`,
	`{"usage":{"prompt_tokens":5,"prompt_tokens":null,"completion_tokens":{},"input_tokens":[1]}}`,
	`{"usage":{"prompt_tokens":10,"prompt_tokens_details":{"cached_tokens":4},"prompt_tokens_details":{"cache_write_tokens":2}}}`,
	`{"usage":{"prompt_tokens":10,"prompt_tokens_details":{"cached_tokens":4},"prompt_tokens_details":null}}`,
	`{"usage":{"prompt_tokens":10,"prompt_tokens_details":5}}`,
	`{"usage":{"prompt_tokens":10,"prompt_tokens_details":[]}}`,
	`{"usage":{"prompt_tokens":10,"completion_tokens_details":"x"}}`,
	`{"usage":{"prompt_tokens":10,"completion_tokens_details":{"audio_tokens":2,"reasoning_tokens":1,"x":[{"y":null}]}}}`,
	`{"usage":{"input_tokens":10,"input_tokens_details":{"audio_tokens":1},"output_tokens_details":{"REASONING_TOKENS":1}}}`,
	`{"usage":{"input_tokens":10,"input_tokens_details":{"audio_tokens":1}},"usage":{"output_tokens":3}}`,
	`{"usage":{"input_tokens":10,"input_tokens_details":{"audio_tokens":1}},"usage":{"input_tokens_details":{"cached_tokens":3}}}`,
	"{\"usage\":{\"input_tokens\":10,\"\xff\":1,\"inpu\\u0074_tokens\":4,\"prompt_tokens_detail\u017f\":{\"cached_token\u017f\":2}}}",
	`{"usage":{"input_tokens":10,"cache_read_input_tokens":5,"cache_creation_input_tokens":0,"output_tokens":3,"service_tier":"priority","speed":"fast"}}`,
	`{"usage":{"input_tokens":1,"service_tier":"priority","service_tier":null,"speed":5}}`,
	`{"usage":{"input_tokens":1,"speed":"fa\u0073t","SPEED":"x","Service_Tier":"batch"}}`,
	`{"usage":{"input_tokens":1,"cache_creation_input_tokens":10,"cache_creation":{"ephemeral_5m_input_tokens":4,"ephemeral_1h_input_tokens":6}}}`,
	`{"usage":{"input_tokens":1,"cache_creation_input_tokens":10,"cache_creation":{"ephemeral_5m_input_tokens":4},"cache_creation":{"ephemeral_1h_input_tokens":6}}}`,
	`{"usage":{"input_tokens":1,"cache_creation_input_tokens":10,"cache_creation":{"ephemeral_1h_input_tokens":6},"cache_creation":null}}`,
	`{"usage":{"input_tokens":1,"cache_creation":7}}`,
	`{"usage":{"output_tokens":3,"output_tokens_details":{"thinking_tokens":2},"output_tokens_details":{}}}`,
	`{"usage":{"output_tokens":3,"output_tokens_details":{"thinking_tokens":2},"output_tokens_details":null}}`,
	`{"usage":{"output_tokens":3,"output_tokens_details":true}}`,
	`{"usage":{"input_tokens":1,"server_tool_use":{"web_search_requests":0,"web_fetch_requests":3}}}`,
	`{"usage":{"input_tokens":1,"server_tool_use":{"web_search_requests":2,"web_search_requests":0}}}`,
	`{"usage":{"input_tokens":1,"server_tool_use":{"web_search_requests":null,"x":"1"}}}`,
	`{"usage":{"input_tokens":1,"server_tool_use":{"web_search_requests":2},"server_tool_use":null}}`,
	`{"usage":{"input_tokens":1,"server_tool_use":{"web_search_requests":2},"server_tool_use":{}}}`,
	`{"usage":{"input_tokens":1,"server_tool_use":{}}}`,
	`{"usage":{"input_tokens":1,"server_tool_use":[]}}`,
	`{"usage":{"input_tokens":1,"server_tool_use":{"web_fetch_requests":2,"web_fetch_request\u0073":1}}}`,
	"{\"usage\":{\"input_tokens\":1,\"server_tool_use\":{\"\xff\":1,\"\xfe\":0}}}",
	"{\"usage\":{\"input_tokens\":1,\"server_tool_use\":{\"\xfe\":0,\"\xff\":1}}}",
	"{\"usage\":{\"input_tokens\":1,\"server_tool_use\":{\"\xffweb_search\":1,\"\xfeweb_search\":0}}}",
	"{\"usage\":{\"input_tokens\":1,\"server_tool_use\":{\"\xfeweb_search\":0,\"\xffweb_search\":1}}}",
	`{"usage":{"input_tokens":1,"fallback_credit":null}}`,
	`{"usage":{"input_tokens":1,"fallback_credit":{"x":1}}}`,
	`{"usage":{"input_tokens":1,"fallback_credit":{"x":1},"fallback_credit":null}}`,
	`{"usage":{"input_tokens":1,"fallback_credit":0}}`,
	`{"usage":{"input_tokens":1,"iterations":[{"type":"compaction","input_tokens":2}]}}`,
	`{"usage":{"input_tokens":1,"iterations":null}}`,
	`{"usage":{"input_tokens":1,"iterations":5}}`,
	`{"usage":{"input_tokens":1,"iterations":[{"type":"compaction","input_tokens":2}]},"usage":{"iterations":[{"input_tokens":5}]}}`,
	`{"usage":{"input_tokens":1,"Iterations":[{"type":"advisor_message"}],"x":[}}`,
	`{"usage":{"input_tokens":1},"usage":{"output_tokens":2}}`,
	`{"usage":null,"usage":{"output_tokens":2}}`,
	`{"usage":{"input_tokens":1},"usage":5}`,
	`{"choices":[{"a":"\x"}],"usage":{"prompt_tokens":1}}`,
	`{"choices":[{"a":"\u12"}],"usage":{"prompt_tokens":1}}`,
	`{"choices":[}],"usage":{"prompt_tokens":1}}`,
	`{"choices":[1 2],"usage":{"prompt_tokens":1}}`,
	`{"choices":[1},"usage":{"prompt_tokens":1}}`,
	`{"choices":{"a":[1}],"usage":{"prompt_tokens":1}}`,
	`{"choices":{"a":1],"usage":{"prompt_tokens":1}}`,
	`{"choices":[01],"usage":{"prompt_tokens":1}}`,
	`{"choices":[-],"usage":{"prompt_tokens":1}}`,
	`{"choices":[1.],"usage":{"prompt_tokens":1}}`,
	`{"choices":[1e],"usage":{"prompt_tokens":1}}`,
	`{"choices":[1.5e+10,-0,0.0,-1E-2],"usage":{"prompt_tokens":1}}`,
	`{"choices":[tru],"usage":{"prompt_tokens":1}}`,
	`{"choices":[true,false,null,{},[],""],"usage":{"prompt_tokens":1}}`,
	`{"choices":{"a":1,"b":[{"c":"\"\\\/\b\f\n\r\t\u00e9"}]},"usage":{"prompt_tokens":1}}`,
	`{"choices":{"a":1,},"usage":{"prompt_tokens":1}}`,
	`{"choices":{"a" 1},"usage":{"prompt_tokens":1}}`,
	`{"choices":{1:1},"usage":{"prompt_tokens":1}}`,
	`{"choices":[{"content":"a` + "\x01" + `b"}],"usage":{"prompt_tokens":1}}`,
	`{"choices":"` + strings.Repeat(`\\`, 9) + `"","usage":{"prompt_tokens":1}}`,
	`{"choices":"` + strings.Repeat(`\\`, 8) + `","usage":{"prompt_tokens":1}}`,
	`{"choices":"` + strings.Repeat(`abcdefg"`, 3) + `","usage":{"prompt_tokens":1}}`,
	`{"output":null}`,
	`{"output":[]}`,
	`{"output":{}}`,
	`{"output":"x"}`,
	`{"output":[null,{},{"type":null}]}`,
	`{"output":[1]}`,
	`{"output":[[]]}`,
	`{"output":[{"type":5}]}`,
	`{"output":[{"type":"web_search_call"}]}`,
	`{"output":[{"TYPE":"web_search_call"}]}`,
	`{"output":[{"type":"web\u005fsearch_call"}]}`,
	`{"output":[{"type":"web_search_call","type":null}]}`,
	`{"output":[{"type":"web_search_call","type":"message"}]}`,
	`{"output":[{"type":"message","content":[{"type":"web_search_call"}]}]}`,
	`{"output":[{"type":"web_search_call"}],"output":[{}]}`,
	`{"output":[{"type":"web_search_call"}],"output":[]}`,
	`{"output":[{"type":"web_search_call"}],"output":null}`,
	`{"output":[{"type":"message"},{"type":"image_generation_call"}],"output":[{"type":"message"}]}`,
	`{"output":[{"type":"web_search_call"}],"output":[{"type":1}]}`,
	`{"output":[{"type":"message"}],"output":[{"type":"code_interpreter_call"}]}`,
	`{"output":[{"type":"web_search_call"}],"usage":{"input_tokens_details":{"audio_tokens":3}}}`,
	`{"output":[{"type":"message"}`,
	`{"output":[{"type":"message"},]}`,
	`{"output":[{"type":"message"}}`,
	`{"output":[{"type":"message",}]}`,
	`{"output":[{"type":"message"} {}]}`,
	`{"output":[{"type" "message"}]}`,
	`{"choices":` + strings.Repeat("[", maxDepth-1) + strings.Repeat("]", maxDepth-1) + `,"usage":{"prompt_tokens":1}}`,
	`{"choices":` + strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth) + `,"usage":{"prompt_tokens":1}}`,
	`{"choices":` + strings.Repeat(`{"a":`, maxDepth-1) + `1` + strings.Repeat("}", maxDepth-1) + `}`,
	`{"choices":` + strings.Repeat(`{"a":`, maxDepth) + `1` + strings.Repeat("}", maxDepth) + `}`,
	`{"choices":` + strings.Repeat("[{},", 70) + strings.Repeat("[", 70) + strings.Repeat("]", 70) + strings.Repeat("]", 70) + `}`,
	`{"choices":` + strings.Repeat("[", 100) + strings.Repeat("}", 100) + `}`,
}

func seedReference(f *testing.F) {
	for _, body := range referenceCases {
		if len(body) > 4<<10 {
			continue
		}
		for i := range kinds {
			f.Add(uint8(i), "", []byte(body))
		}
	}
	// The larger bodies, which slow the fuzzer down, are checked by
	// TestParseMatchesReference.
	for _, b := range benchBodies() {
		if len(b.body) <= 4<<10 {
			f.Add(b.pair, "", b.body)
		}
	}
}

// TestParseMatchesReference runs the probes, the recorded streams' events
// and whole recordings through every provider and endpoint pair.
func TestParseMatchesReference(t *testing.T) {
	t.Parallel()
	bodies := referenceCases
	files, err := filepath.Glob("testdata/*.sse")
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		for _, e := range readSSE(t, file) {
			bodies = append(bodies, string(e.data))
		}
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, string(b))
	}
	for _, b := range benchBodies() {
		bodies = append(bodies, string(b.body))
	}
	for _, body := range bodies {
		for _, k := range kinds {
			matchReference(t, k, []byte(body))
		}
		// Every cut of a body is malformed, or a shorter valid one.
		if len(body) < 4096 {
			for i := range len(body) {
				matchReference(t, OpenAIResponses, []byte(body[:i]))
			}
		}
	}
}

// TestParseUnsupported checks that kinds Parse does not know fail,
// whatever the body.
func TestParseUnsupported(t *testing.T) {
	t.Parallel()
	for _, k := range []Kind{0, AnthropicMessages + 1, 255} {
		for _, body := range []string{`{}`, `x`} {
			_, err := Parse(k, []byte(body))
			_, wantErr := parseReference(k, []byte(body))
			if !errors.Is(err, ErrUnsupported) || !errors.Is(wantErr, ErrUnsupported) {
				t.Errorf("Parse(%s, %s) = %v, reference %v; want ErrUnsupported", k, body, err, wantErr)
			}
		}
	}
}

// TestParseMatchesReferenceStrings puts random strings, over an alphabet
// of the bytes the string scan treats apart, at every offset of its 8-byte
// words: as a skipped value, as member names, and as map keys.
func TestParseMatchesReferenceStrings(t *testing.T) {
	t.Parallel()
	alphabet := []string{"a", "é", "\xff", `"`, `\`, `\"`, `\\`, `\n`, `\u00e9`, `\u12`, `\x`, "\x01", "\x1f", " ", "u", "0"}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		var b strings.Builder
		for range rng.IntN(24) {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		str := b.String()
		matchReference(t, OpenAIChat, []byte(`{"choices":"`+str+`","usage":{"prompt_tokens":1}}`))
		matchReference(t, OpenAIResponses, []byte(`{"`+str+`":1,"output":[{"type":"`+str+`"}]}`))
		matchReference(t, AnthropicMessages, []byte(`{"usage":{"server_tool_use":{"`+str+`":1,"a`+str+`":0}}}`))
		// Keys that differ only in invalid UTF-8 decode to one key.
		matchReference(t, AnthropicMessages, []byte(`{"usage":{"server_tool_use":{"`+str+"\xff"+`":1,"`+str+"\xfe"+`":0}}}`))
	}
}
