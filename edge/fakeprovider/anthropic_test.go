package fakeprovider_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/anthropics/anthropic-sdk-go/v2"
	aoption "github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/persiv/codex/edge/fakeprovider"
)

func anthropicClient(ts *httptest.Server, opts ...aoption.RequestOption) anthropic.Client {
	return anthropic.NewClient(append([]aoption.RequestOption{
		aoption.WithBaseURL(ts.URL),
		aoption.WithAPIKey(testKey),
		aoption.WithMaxRetries(0),
	}, opts...)...)
}

func messageParams(model string, tools, cache bool) anthropic.MessageNewParams {
	question := anthropic.TextBlockParam{Text: "what is the weather today"}
	if cache {
		question.CacheControl = anthropic.NewCacheControlEphemeralParam()
	}
	p := anthropic.MessageNewParams{
		Model:     model,
		MaxTokens: 256,
		System:    []anthropic.TextBlockParam{{Text: "Be brief."}},
		Messages: []anthropic.MessageParam{
			anthropic.NewUserMessage(anthropic.NewTextBlock("hello")),
			anthropic.NewAssistantMessage(anthropic.NewTextBlock("hi there")),
			anthropic.NewUserMessage(anthropic.ContentBlockParamUnion{OfText: &question}),
		},
	}
	if tools {
		p.Tools = []anthropic.ToolUnionParam{
			{OfTool: &anthropic.ToolParam{Name: "get_weather", InputSchema: anthropic.ToolInputSchemaParam{Properties: map[string]any{}}}},
		}
	}
	return p
}

func checkAnthropicUsage(t *testing.T, got anthropic.Usage, want fakeprovider.Usage, cache bool) {
	t.Helper()
	if got.InputTokens != want.InputTokens || got.OutputTokens != want.OutputTokens ||
		got.CacheCreationInputTokens != want.CacheCreationTokens || got.CacheReadInputTokens != want.CacheReadTokens ||
		got.CacheCreation.Ephemeral5mInputTokens != want.CacheCreationTokens {
		t.Fatalf("usage %s, want %+v", got.RawJSON(), want)
	}
	if want.InputTokens == 0 || want.OutputTokens == 0 || (want.CacheReadTokens != 0) != cache || (want.CacheCreationTokens != 0) != cache {
		t.Fatalf("usage %+v: counters not exercised (cache_control %v)", want, cache)
	}
}

var messageCases = []struct {
	name         string
	tools, cache bool
}{
	{"text", false, false},
	{"text with cache_control", false, true},
	{"tool use", true, false},
	{"tool use with cache_control", true, true},
}

func TestMessagesJSON(t *testing.T) {
	t.Parallel()
	for _, tt := range messageCases {
		t.Run(tt.name, func(t *testing.T) {
			fp, ts := start(t, fakeprovider.Options{})
			client := anthropicClient(ts)
			msg, err := client.Messages.New(testContext(t), messageParams("claude-sonnet-4-5", tt.tools, tt.cache))
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if msg.Model != "claude-sonnet-4-5" || msg.Role != "assistant" || len(msg.Content) != 1 {
				t.Fatalf("message %s", msg.RawJSON())
			}
			if tt.tools {
				use := msg.Content[0].AsToolUse()
				if msg.StopReason != anthropic.StopReasonToolUse || use.Name != "get_weather" ||
					string(use.Input) != `{"query":"what is the weather today"}` || use.ID == "" {
					t.Fatalf("tool use %s", msg.RawJSON())
				}
			} else if msg.StopReason != anthropic.StopReasonEndTurn || msg.Content[0].AsText().Text != "echo: what is the weather today" {
				t.Fatalf("text %s", msg.RawJSON())
			}
			checkAnthropicUsage(t, msg.Usage, expected(t, fp, fakeprovider.PathMessages), tt.cache)
		})
	}
}

func TestMessagesStream(t *testing.T) {
	t.Parallel()
	for _, tt := range messageCases {
		t.Run(tt.name, func(t *testing.T) {
			fp, ts := start(t, fakeprovider.Options{Chunks: 3})
			client := anthropicClient(ts)
			stream := client.Messages.NewStreaming(testContext(t), messageParams("claude-haiku-4-5", tt.tools, tt.cache))
			var msg anthropic.Message
			var events []string
			var startUsage anthropic.Usage
			for stream.Next() {
				ev := stream.Current()
				events = append(events, ev.Type)
				if ev.Type == "message_start" {
					startUsage = ev.Message.Usage
				}
				if err := msg.Accumulate(ev); err != nil {
					t.Fatalf("Accumulate %s: %v", ev.RawJSON(), err)
				}
			}
			if err := stream.Err(); err != nil {
				t.Fatalf("stream: %v", err)
			}
			// The SDK drops ping events; every other event reaches the caller.
			want := []string{"message_start", "content_block_start", "content_block_delta", "content_block_delta",
				"content_block_delta", "content_block_stop", "message_delta", "message_stop"}
			if len(events) != len(want) {
				t.Fatalf("events %q, want %q", events, want)
			}
			for i := range want {
				if events[i] != want[i] {
					t.Fatalf("events %q, want %q", events, want)
				}
			}
			if tt.tools {
				use := msg.Content[0].AsToolUse()
				if msg.StopReason != anthropic.StopReasonToolUse || use.Name != "get_weather" ||
					string(use.Input) != `{"query":"what is the weather today"}` {
					t.Fatalf("tool use %s", msg.RawJSON())
				}
			} else if msg.StopReason != anthropic.StopReasonEndTurn || msg.Content[0].AsText().Text != "echo: what is the weather today" {
				t.Fatalf("text %s", msg.RawJSON())
			}
			u := expected(t, fp, fakeprovider.PathMessages)
			checkAnthropicUsage(t, msg.Usage, u, tt.cache)
			// message_start carries the input side and one output token, as Anthropic sends it.
			if startUsage.InputTokens != u.InputTokens || startUsage.CacheReadInputTokens != u.CacheReadTokens || startUsage.OutputTokens != 1 {
				t.Fatalf("message_start usage %s", startUsage.RawJSON())
			}
		})
	}
}

func TestCountTokens(t *testing.T) {
	t.Parallel()
	fp, ts := start(t, fakeprovider.Options{})
	client := anthropicClient(ts)
	res, err := client.Messages.CountTokens(testContext(t), anthropic.MessageCountTokensParams{
		Model:    "claude-sonnet-4-5",
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("one two three"))},
	})
	if err != nil {
		t.Fatalf("CountTokens: %v", err)
	}
	want := expected(t, fp, fakeprovider.PathCountTokens)
	if res.InputTokens != want.InputTokens || res.InputTokens != 3+8 {
		t.Fatalf("input_tokens %d, want %d", res.InputTokens, want.InputTokens)
	}
}

func TestAnthropicErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, model, key string
		status           int
		typ              string
		retryAfter       string
	}{
		{"wrong key", "claude-x", "wrong", http.StatusUnauthorized, "authentication_error", ""},
		{"rate limit", fakeprovider.ModelError429, testKey, http.StatusTooManyRequests, "rate_limit_error", "1"},
		{"server error", fakeprovider.ModelError500, testKey, http.StatusInternalServerError, "api_error", ""},
		{"bad request", fakeprovider.ModelError400, testKey, http.StatusBadRequest, "invalid_request_error", ""},
	}
	for _, tt := range tests {
		for _, stream := range []bool{false, true} {
			name := tt.name + "/json"
			if stream {
				name = tt.name + "/stream"
			}
			t.Run(name, func(t *testing.T) {
				fp, ts := start(t, fakeprovider.Options{})
				client := anthropicClient(ts, aoption.WithAPIKey(tt.key))
				params := messageParams(tt.model, false, false)
				var err error
				if stream {
					s := client.Messages.NewStreaming(testContext(t), params)
					for s.Next() {
						t.Fatal("stream yielded an event")
					}
					err = s.Err()
				} else {
					_, err = client.Messages.New(testContext(t), params)
				}
				var apiErr *anthropic.Error
				if !errors.As(err, &apiErr) {
					t.Fatalf("error %v (%T) is not an *anthropic.Error", err, err)
				}
				if apiErr.StatusCode != tt.status || string(apiErr.Type()) != tt.typ || apiErr.Message == "" {
					t.Fatalf("error %d %s %q", apiErr.StatusCode, apiErr.Type(), apiErr.Message)
				}
				if apiErr.RequestID == "" {
					t.Fatal("no request id decoded")
				}
				if got := apiErr.Response.Header.Get("retry-after"); got != tt.retryAfter {
					t.Fatalf("retry-after %q, want %q", got, tt.retryAfter)
				}
				if n := fp.Count(fakeprovider.PathMessages); n != 1 {
					t.Fatalf("count %d, want 1", n)
				}
			})
		}
	}
}

func TestAnthropicKeyHeaders(t *testing.T) {
	t.Parallel()
	_, ts := start(t, fakeprovider.Options{})
	body := `{"model":"claude-x","messages":[{"role":"user","content":"hi"}]}`
	tests := []struct {
		name, header, value string
		status              int
	}{
		{"x-api-key", "x-api-key", testKey, http.StatusOK},
		{"bearer", "Authorization", "Bearer " + testKey, http.StatusOK},
		{"wrong x-api-key", "x-api-key", "nope", http.StatusUnauthorized},
		{"wrong bearer", "Authorization", "Bearer nope", http.StatusUnauthorized},
		{"not bearer", "Authorization", "Basic " + testKey, http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(testContext(t), "POST", ts.URL+fakeprovider.PathCountTokens, strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("anthropic-version", "2023-06-01")
			req.Header.Set(tt.header, tt.value)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", res.StatusCode, tt.status)
			}
		})
	}
}
