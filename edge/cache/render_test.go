package cache_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/cache"
	"github.com/persiv/codex/edge/fakeprovider"
	"github.com/persiv/codex/edge/provider"
	"github.com/persiv/codex/edge/provider/anthropic"
	"github.com/persiv/codex/edge/provider/openai"
	"github.com/persiv/codex/edge/sse"
)

// fetch asks the fake provider and returns its answer as a cache entry.
func fetch(t *testing.T, fake http.Handler, f provider.Format, ep provider.Endpoint, path, body string) *cache.Entry {
	t.Helper()
	req := httptest.NewRequest("POST", path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer k")
	req.Header.Set("x-api-key", "k")
	req.Header.Set("anthropic-version", "2023-06-01")
	rec := httptest.NewRecorder()
	fake.ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Fatalf("fake: %d %s", rec.Code, rec.Body)
	}
	e := &cache.Entry{Provider: f.Provider(), Endpoint: ep, Status: 200, ContentType: rec.Header().Get("Content-Type")}
	b := rec.Body.Bytes()
	if !strings.HasPrefix(e.ContentType, "text/event-stream") {
		e.Body = b
		return e
	}
	e.Stream = true
	rd := sse.NewReader(bytes.NewReader(b))
	track := f.NewStream(ep)
	for {
		ev, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		e.AddEvent(ev.Raw, track.Observe(string(ev.Name), ev.Data))
	}
	return e
}

// usageOf is the usage the edge reads from an entry in its form.
func usageOf(t *testing.T, f provider.Format, e *cache.Entry) edge.Usage {
	t.Helper()
	if !e.Stream {
		r, err := f.ParseUsage(e.Endpoint, e.Body)
		if err != nil {
			t.Fatal(err)
		}
		return r.Usage
	}
	track := f.NewStream(e.Endpoint)
	rd := sse.NewReader(bytes.NewReader(e.Events))
	for {
		ev, err := rd.Next()
		if err == io.EOF {
			return track.Result().Usage
		}
		if err != nil {
			t.Fatal(err)
		}
		track.Observe(string(ev.Name), ev.Data)
	}
}

// TestRenderFakeProviderAnswers renders every streamed answer of the fake
// provider as JSON and every JSON answer as a stream, and checks the
// result against the answer the provider gives in that form: same JSON
// content (ids and timestamps aside) and same usage.
func TestRenderFakeProviderAnswers(t *testing.T) {
	fake := fakeprovider.New(fakeprovider.Options{})
	cases := []struct {
		name     string
		endpoint provider.Endpoint
		path     string
		f        provider.Format
		body     string
	}{
		{"chat text", openai.ChatCompletions, fakeprovider.PathChatCompletions, openai.Format{}, `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"render me"}]}`},
		{"chat tool", openai.ChatCompletions, fakeprovider.PathChatCompletions, openai.Format{}, `{"model":"gpt-4o","messages":[{"role":"user","content":"weather"}],"tools":[{"type":"function","function":{"name":"get_weather"}}]}`},
		{"responses text", openai.Responses, fakeprovider.PathResponses, openai.Format{}, `{"model":"gpt-4.1","input":"render me"}`},
		{"responses tool", openai.Responses, fakeprovider.PathResponses, openai.Format{}, `{"model":"gpt-4.1","input":"weather","tools":[{"type":"function","name":"get_weather","parameters":{}}]}`},
		{"messages text", anthropic.Messages, fakeprovider.PathMessages, anthropic.Format{}, `{"model":"claude-haiku-4-5","max_tokens":32,"messages":[{"role":"user","content":"render me"}]}`},
		{"messages tool", anthropic.Messages, fakeprovider.PathMessages, anthropic.Format{}, `{"model":"claude-haiku-4-5","max_tokens":32,"messages":[{"role":"user","content":"weather"}],"tools":[{"name":"lookup","input_schema":{"type":"object"}}]}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			streamBody := c.body[:len(c.body)-1] + `,"stream":true}`
			if c.endpoint == openai.ChatCompletions {
				streamBody = c.body[:len(c.body)-1] + `,"stream":true,"stream_options":{"include_usage":true}}`
			}
			js := fetch(t, fake, c.f, c.endpoint, c.path, c.body)
			st := fetch(t, fake, c.f, c.endpoint, c.path, streamBody)
			if !st.Complete(c.f) {
				t.Fatal("the fake's stream is not complete")
			}

			asJSON, err := cache.Render(c.f, st, false)
			if err != nil {
				t.Fatal(err)
			}
			if diff := compareJSON(t, js.Body, asJSON.Body); diff != "" {
				t.Fatalf("stream rendered as JSON differs: %s\nwant %s\ngot  %s", diff, js.Body, asJSON.Body)
			}
			if got, want := usageOf(t, c.f, asJSON), usageOf(t, c.f, js); got != want {
				t.Fatalf("usage %+v, want %+v", got, want)
			}

			asStream, err := cache.Render(c.f, js, true)
			if err != nil {
				t.Fatal(err)
			}
			if !asStream.Complete(c.f) {
				t.Fatal("rendered stream is not complete")
			}
			if got, want := usageOf(t, c.f, asStream), usageOf(t, c.f, st); got != want {
				t.Fatalf("stream usage %+v, want %+v", got, want)
			}
			// And back: the rendered stream collapses to the same JSON.
			back, err := cache.Render(c.f, asStream, false)
			if err != nil {
				t.Fatal(err)
			}
			if diff := compareJSON(t, js.Body, back.Body); diff != "" {
				t.Fatalf("round trip differs: %s\nwant %s\ngot  %s", diff, js.Body, back.Body)
			}
		})
	}
}

// compareJSON compares two answers as JSON values, ignoring ids and
// timestamps (they differ between two provider calls).
func compareJSON(t *testing.T, want, got []byte) string {
	t.Helper()
	var a, b any
	if err := json.Unmarshal(want, &a); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(got, &b); err != nil {
		return "not JSON: " + err.Error()
	}
	strip(a)
	strip(b)
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if !bytes.Equal(ja, jb) {
		return "\n" + string(ja) + "\n" + string(jb)
	}
	return ""
}

func strip(v any) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			switch k {
			case "id", "created", "created_at", "call_id", "item_id":
				delete(x, k)
			default:
				strip(e)
			}
		}
	case []any:
		for _, e := range x {
			strip(e)
		}
	}
}

// FuzzRender: whatever a cached entry holds, rendering it in the other
// form either works or says it cannot; it never panics.
func FuzzRender(f *testing.F) {
	f.Add(uint8(0), []byte(`{"choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}`))
	f.Add(uint8(1), []byte("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n"))
	f.Add(uint8(2), []byte(`{"status":"completed","output":[{"type":"message","id":"m","content":[{"type":"output_text","text":"x"}]}]}`))
	f.Add(uint8(3), []byte("event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{}}\n\n"))
	f.Add(uint8(4), []byte(`{"content":[{"type":"tool_use","id":"t","name":"n","input":{"a":1}}],"stop_reason":"tool_use","usage":{}}`))
	f.Add(uint8(5), []byte("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{}}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\"}}\n\nevent: message_stop\ndata: {}\n\n"))
	kinds := []struct {
		f        provider.Format
		endpoint provider.Endpoint
	}{{openai.Format{}, openai.ChatCompletions}, {openai.Format{}, openai.Responses}, {anthropic.Format{}, anthropic.Messages}}
	f.Fuzz(func(t *testing.T, kind uint8, b []byte) {
		k := kinds[int(kind/2)%len(kinds)]
		e := &cache.Entry{Provider: k.f.Provider(), Endpoint: k.endpoint, Status: 200}
		if kind%2 == 1 {
			e.Stream = true
			e.AddEvent(b, false)
		} else {
			e.Body = b
		}
		out, err := cache.Render(k.f, e, !e.Stream)
		if err == nil && out.Stream == e.Stream {
			t.Fatal("rendered in the same form")
		}
	})
}
