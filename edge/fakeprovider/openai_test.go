package fakeprovider_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	"github.com/openai/openai-go/v3/shared"

	"github.com/persiv/codex/edge/fakeprovider"
)

const testKey = "sk-test-key"

// start serves a fake on a loopback httptest server.
func start(t *testing.T, opts fakeprovider.Options) (*fakeprovider.Server, *httptest.Server) {
	t.Helper()
	if opts.OpenAIKey == "" {
		opts.OpenAIKey = testKey
	}
	if opts.AnthropicKey == "" {
		opts.AnthropicKey = testKey
	}
	fp := fakeprovider.New(opts)
	ts := httptest.NewServer(fp)
	t.Cleanup(ts.Close)
	return fp, ts
}

func openAIClient(ts *httptest.Server, opts ...option.RequestOption) openai.Client {
	return openai.NewClient(append([]option.RequestOption{
		option.WithBaseURL(ts.URL + "/v1/"),
		option.WithAPIKey(testKey),
		option.WithMaxRetries(0),
	}, opts...)...)
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// lastBody returns the body of the most recent request the fake recorded.
func lastBody(t *testing.T, fp *fakeprovider.Server) []byte {
	t.Helper()
	reqs := fp.Requests()
	if len(reqs) == 0 {
		t.Fatal("no request recorded")
	}
	return reqs[len(reqs)-1].Body
}

// expected returns the usage ExpectedUsage computes for the last request,
// after checking it is what the server recorded and reports as last.
func expected(t *testing.T, fp *fakeprovider.Server, path string) fakeprovider.Usage {
	t.Helper()
	want, err := fakeprovider.ExpectedUsage(path, lastBody(t, fp))
	if err != nil {
		t.Fatalf("ExpectedUsage: %v", err)
	}
	reqs := fp.Requests()
	if rec := reqs[len(reqs)-1].Usage; rec == nil || *rec != want {
		t.Fatalf("recorded usage %+v, want %+v", rec, want)
	}
	if got, ok := fp.LastUsage(); !ok || got != want {
		t.Fatalf("LastUsage = %+v, %v; want %+v", got, ok, want)
	}
	return want
}

func checkChatUsage(t *testing.T, got openai.CompletionUsage, want fakeprovider.Usage) {
	t.Helper()
	if got.PromptTokens != want.InputTokens || got.CompletionTokens != want.OutputTokens ||
		got.TotalTokens != want.TotalTokens() ||
		got.PromptTokensDetails.CachedTokens != want.CachedTokens ||
		got.CompletionTokensDetails.ReasoningTokens != want.ReasoningTokens {
		t.Fatalf("usage %s, want %+v", got.RawJSON(), want)
	}
	if want.CachedTokens == 0 || want.InputTokens == 0 || want.OutputTokens == 0 {
		t.Fatalf("usage %+v has zero counters", want)
	}
}

func chatParams(model, text string, tools bool) openai.ChatCompletionNewParams {
	p := openai.ChatCompletionNewParams{
		Model: model,
		Messages: []openai.ChatCompletionMessageParamUnion{
			openai.SystemMessage("You are terse."),
			openai.UserMessage("first question"),
			openai.AssistantMessage("first answer"),
			openai.UserMessage(text),
		},
	}
	if tools {
		p.Tools = []openai.ChatCompletionToolUnionParam{
			openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{Name: "get_weather"}),
			openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{Name: "other"}),
		}
	}
	return p
}

func TestChatCompletionsJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, model   string
		tools         bool
		wantReasoning bool
	}{
		{"text", "gpt-4o", false, false},
		{"tool call", "gpt-4o-mini", true, false},
		{"reasoning o-series", "o3-mini", false, true},
		{"reasoning gpt-5", "gpt-5", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fp, ts := start(t, fakeprovider.Options{})
			client := openAIClient(ts)
			res, err := client.Chat.Completions.New(testContext(t), chatParams(tt.model, "what  is\tthe weather", tt.tools))
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if res.Model != tt.model || res.Object != "chat.completion" || len(res.Choices) != 1 {
				t.Fatalf("unexpected completion %s", res.RawJSON())
			}
			msg := res.Choices[0].Message
			if tt.tools {
				if res.Choices[0].FinishReason != "tool_calls" || len(msg.ToolCalls) != 1 {
					t.Fatalf("want one tool call, got %s", res.RawJSON())
				}
				call := msg.ToolCalls[0].AsFunction()
				if call.Function.Name != "get_weather" || call.Function.Arguments != `{"query":"what is the weather"}` || call.ID == "" {
					t.Fatalf("tool call %s", msg.ToolCalls[0].RawJSON())
				}
			} else if res.Choices[0].FinishReason != "stop" || msg.Content != "echo: what is the weather" {
				t.Fatalf("message %s", res.RawJSON())
			}
			want := expected(t, fp, fakeprovider.PathChatCompletions)
			checkChatUsage(t, res.Usage, want)
			if (want.ReasoningTokens != 0) != tt.wantReasoning {
				t.Fatalf("reasoning tokens %d for %s", want.ReasoningTokens, tt.model)
			}
			// words: 3 + 2 + 2 + 4 = 11 prompt words, plus the overhead of 8.
			if want.InputTokens != 19 {
				t.Fatalf("input tokens %d, want 19", want.InputTokens)
			}
		})
	}
}

func TestChatCompletionsStream(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		tools        bool
		includeUsage bool
	}{
		{"text without usage", false, false},
		{"text with usage", false, true},
		{"tool call without usage", true, false},
		{"tool call with usage", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const chunks = 5
			fp, ts := start(t, fakeprovider.Options{Chunks: chunks})
			client := openAIClient(ts)
			params := chatParams("gpt-5", "stream me some words please", tt.tools)
			if tt.includeUsage {
				params.StreamOptions.IncludeUsage = openai.Bool(true)
			}
			stream := client.Chat.Completions.NewStreaming(testContext(t), params)
			var acc openai.ChatCompletionAccumulator
			var usageChunks, deltas, events int
			for stream.Next() {
				c := stream.Current()
				events++
				if !acc.AddChunk(c) {
					t.Fatalf("accumulator refused chunk %s", c.RawJSON())
				}
				hasUsageKey := c.JSON.Usage.Valid() || strings.Contains(c.RawJSON(), `"usage"`)
				if hasUsageKey != tt.includeUsage {
					t.Fatalf("chunk %s: usage key present=%v, include_usage=%v", c.RawJSON(), hasUsageKey, tt.includeUsage)
				}
				if len(c.Choices) == 0 {
					usageChunks++
					if !c.JSON.Usage.Valid() {
						t.Fatalf("choice-less chunk without usage: %s", c.RawJSON())
					}
					continue
				}
				if d := c.Choices[0].Delta; d.Content != "" || (len(d.ToolCalls) > 0 && d.ToolCalls[0].Function.Arguments != "") {
					deltas++
				}
			}
			if err := stream.Err(); err != nil {
				t.Fatalf("stream: %v", err)
			}
			// role chunk + deltas + finish chunk (+ usage chunk).
			if deltas != chunks || events != chunks+2+usageChunks {
				t.Fatalf("%d deltas in %d events, want %d deltas", deltas, events, chunks)
			}
			wantUsageChunks := 0
			if tt.includeUsage {
				wantUsageChunks = 1
			}
			if usageChunks != wantUsageChunks {
				t.Fatalf("%d usage chunks, want %d", usageChunks, wantUsageChunks)
			}
			msg := acc.Choices[0].Message
			if tt.tools {
				if acc.Choices[0].FinishReason != "tool_calls" || len(msg.ToolCalls) != 1 ||
					msg.ToolCalls[0].Function.Name != "get_weather" ||
					msg.ToolCalls[0].Function.Arguments != `{"query":"stream me some words please"}` {
					t.Fatalf("accumulated %+v", msg.ToolCalls)
				}
			} else if acc.Choices[0].FinishReason != "stop" || msg.Content != "echo: stream me some words please" {
				t.Fatalf("accumulated %q finish %q", msg.Content, acc.Choices[0].FinishReason)
			}
			if !tt.includeUsage {
				if _, ok := fp.LastUsage(); ok {
					t.Fatal("LastUsage set although no usage was emitted")
				}
				if acc.Usage.TotalTokens != 0 {
					t.Fatalf("usage %+v without include_usage", acc.Usage)
				}
				return
			}
			checkChatUsage(t, acc.Usage, expected(t, fp, fakeprovider.PathChatCompletions))
		})
	}
}

func TestResponsesJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		params responses.ResponseNewParams
		want   string
		tool   bool
	}{
		{"string input", responses.ResponseNewParams{
			Model: "gpt-4.1",
			Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("hello there")},
		}, "echo: hello there", false},
		{"message list", responses.ResponseNewParams{
			Model:        "o3-mini",
			Instructions: openai.String("be brief"),
			Input: responses.ResponseNewParamsInputUnion{OfInputItemList: responses.ResponseInputParam{
				responses.ResponseInputItemParamOfMessage("old question", responses.EasyInputMessageRoleUser),
				responses.ResponseInputItemParamOfMessage("old answer", responses.EasyInputMessageRoleAssistant),
				responses.ResponseInputItemParamOfMessage("new question here", responses.EasyInputMessageRoleUser),
			}},
		}, "echo: new question here", false},
		{"tool call", responses.ResponseNewParams{
			Model: "gpt-4.1",
			Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("weather in Paris")},
			Tools: []responses.ToolUnionParam{{OfFunction: &responses.FunctionToolParam{Name: "get_weather"}}},
		}, `{"query":"weather in Paris"}`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fp, ts := start(t, fakeprovider.Options{})
			client := openAIClient(ts)
			res, err := client.Responses.New(testContext(t), tt.params)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if res.Status != "completed" || len(res.Output) != 1 {
				t.Fatalf("response %s", res.RawJSON())
			}
			if tt.tool {
				call := res.Output[0].AsFunctionCall()
				if call.Name != "get_weather" || call.Arguments != tt.want || call.CallID == "" {
					t.Fatalf("function call %s", res.Output[0].RawJSON())
				}
			} else if got := res.OutputText(); got != tt.want {
				t.Fatalf("OutputText = %q, want %q", got, tt.want)
			}
			want := expected(t, fp, fakeprovider.PathResponses)
			checkResponseUsage(t, res.Usage, want)
		})
	}
}

func checkResponseUsage(t *testing.T, got responses.ResponseUsage, want fakeprovider.Usage) {
	t.Helper()
	if got.InputTokens != want.InputTokens || got.OutputTokens != want.OutputTokens ||
		got.TotalTokens != want.TotalTokens() ||
		got.InputTokensDetails.CachedTokens != want.CachedTokens ||
		got.OutputTokensDetails.ReasoningTokens != want.ReasoningTokens {
		t.Fatalf("usage %s, want %+v", got.RawJSON(), want)
	}
	if want.CachedTokens == 0 || want.OutputTokens == 0 {
		t.Fatalf("usage %+v has zero counters", want)
	}
}

func TestResponsesStream(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, model string
		tool        bool
		wantEvents  []string
	}{
		{"text", "gpt-5", false, []string{
			"response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
			"response.output_text.delta", "response.output_text.delta", "response.output_text.delta",
			"response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed",
		}},
		{"tool call", "gpt-4o", true, []string{
			"response.created", "response.in_progress", "response.output_item.added",
			"response.function_call_arguments.delta", "response.function_call_arguments.delta", "response.function_call_arguments.delta",
			"response.function_call_arguments.done", "response.output_item.done", "response.completed",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fp, ts := start(t, fakeprovider.Options{Chunks: 3})
			params := responses.ResponseNewParams{
				Model: tt.model,
				Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("tell me a story")},
			}
			if tt.tool {
				params.Tools = []responses.ToolUnionParam{{OfFunction: &responses.FunctionToolParam{Name: "lookup"}}}
			}
			client := openAIClient(ts)
			stream := client.Responses.NewStreaming(testContext(t), params)
			var events []string
			var text, args strings.Builder
			var final responses.Response
			for stream.Next() {
				ev := stream.Current()
				if ev.SequenceNumber != int64(len(events)) {
					t.Fatalf("event %d has sequence_number %d", len(events), ev.SequenceNumber)
				}
				events = append(events, ev.Type)
				switch e := ev.AsAny().(type) {
				case responses.ResponseTextDeltaEvent:
					text.WriteString(e.Delta)
				case responses.ResponseFunctionCallArgumentsDeltaEvent:
					args.WriteString(e.Delta)
				case responses.ResponseTextDoneEvent:
					if e.Text != text.String() {
						t.Fatalf("done text %q, deltas %q", e.Text, text.String())
					}
				case responses.ResponseCompletedEvent:
					final = e.Response
				}
			}
			if err := stream.Err(); err != nil {
				t.Fatalf("stream: %v", err)
			}
			if !slices.Equal(events, tt.wantEvents) {
				t.Fatalf("events\n%q\nwant\n%q", events, tt.wantEvents)
			}
			if tt.tool {
				call := final.Output[0].AsFunctionCall()
				if args.String() != `{"query":"tell me a story"}` || call.Arguments != args.String() || call.Name != "lookup" {
					t.Fatalf("arguments %q, final %s", args.String(), final.Output[0].RawJSON())
				}
			} else if text.String() != "echo: tell me a story" || final.OutputText() != text.String() {
				t.Fatalf("text %q, final %q", text.String(), final.OutputText())
			}
			checkResponseUsage(t, final.Usage, expected(t, fp, fakeprovider.PathResponses))
		})
	}
}

func TestEmbeddings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		params openai.EmbeddingNewParams
		inputs []string
		dims   int
	}{
		{"string float", openai.EmbeddingNewParams{
			Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("one two three")},
		}, []string{"one two three"}, fakeprovider.DefaultEmbeddingDims},
		{"array base64 with dimensions", openai.EmbeddingNewParams{
			Input:          openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"alpha", "beta gamma"}},
			EncodingFormat: openai.EmbeddingNewParamsEncodingFormatBase64,
			Dimensions:     openai.Int(5),
		}, []string{"alpha", "beta gamma"}, 5},
		{"array float", openai.EmbeddingNewParams{
			Input:          openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"x", "y", "z"}},
			EncodingFormat: openai.EmbeddingNewParamsEncodingFormatFloat,
		}, []string{"x", "y", "z"}, fakeprovider.DefaultEmbeddingDims},
		{"tokens", openai.EmbeddingNewParams{
			Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfTokens: []int64{10, 20, 30}},
		}, []string{"10 20 30"}, fakeprovider.DefaultEmbeddingDims},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fp, ts := start(t, fakeprovider.Options{})
			tt.params.Model = "text-embedding-3-small"
			client := openAIClient(ts)
			res, err := client.Embeddings.New(testContext(t), tt.params)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if len(res.Data) != len(tt.inputs) || res.Model != "text-embedding-3-small" {
				t.Fatalf("response %s", res.RawJSON())
			}
			for i, in := range tt.inputs {
				want := fakeprovider.EmbeddingVector(in, tt.dims)
				got := res.Data[i].Embedding
				if res.Data[i].Index != int64(i) || len(got) != len(want) {
					t.Fatalf("embedding %d: index %d, %d dims", i, res.Data[i].Index, len(got))
				}
				for j := range want {
					if float32(got[j]) != want[j] {
						t.Fatalf("embedding %d[%d] = %v, want %v", i, j, got[j], want[j])
					}
				}
			}
			want := expected(t, fp, fakeprovider.PathEmbeddings)
			if res.Usage.PromptTokens != want.InputTokens || res.Usage.TotalTokens != want.InputTokens || want.InputTokens == 0 {
				t.Fatalf("usage %s, want %+v", res.Usage.RawJSON(), want)
			}
		})
	}
}

func TestModels(t *testing.T) {
	t.Parallel()
	_, ts := start(t, fakeprovider.Options{Models: []string{"m1", "m2"}})
	client := openAIClient(ts)
	page, err := client.Models.List(testContext(t))
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	var ids []string
	for _, m := range page.Data {
		if m.Object != "model" || m.OwnedBy == "" || m.Created == 0 {
			t.Fatalf("model %s", m.RawJSON())
		}
		ids = append(ids, m.ID)
	}
	if page.Object != "list" || !slices.Equal(ids, []string{"m1", "m2"}) {
		t.Fatalf("models %s", page.RawJSON())
	}
}

func TestOpenAIErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, model, key string
		status           int
		typ, code        string
		retryAfter       string
	}{
		{"wrong key", "gpt-4o", "sk-wrong", http.StatusUnauthorized, "invalid_request_error", "invalid_api_key", ""},
		{"rate limit", fakeprovider.ModelError429, testKey, http.StatusTooManyRequests, "requests", "rate_limit_exceeded", "1"},
		{"server error", fakeprovider.ModelError500, testKey, http.StatusInternalServerError, "server_error", "", ""},
		{"bad request", fakeprovider.ModelError400, testKey, http.StatusBadRequest, "invalid_request_error", "", ""},
	}
	for _, tt := range tests {
		for _, stream := range []bool{false, true} {
			name := tt.name + "/json"
			if stream {
				name = tt.name + "/stream"
			}
			t.Run(name, func(t *testing.T) {
				fp, ts := start(t, fakeprovider.Options{})
				client := openAIClient(ts, option.WithAPIKey(tt.key))
				params := chatParams(tt.model, "hi", false)
				var err error
				if stream {
					s := client.Chat.Completions.NewStreaming(testContext(t), params)
					for s.Next() {
						t.Fatal("stream yielded an event")
					}
					err = s.Err()
				} else {
					_, err = client.Chat.Completions.New(testContext(t), params)
				}
				var apiErr *openai.Error
				if !errors.As(err, &apiErr) {
					t.Fatalf("error %v (%T) is not an *openai.Error", err, err)
				}
				if apiErr.StatusCode != tt.status || apiErr.Type != tt.typ || apiErr.Code != tt.code || apiErr.Message == "" {
					t.Fatalf("error %d %s", apiErr.StatusCode, apiErr.RawJSON())
				}
				if !apiErr.JSON.Param.Valid() && !strings.Contains(apiErr.RawJSON(), `"param":null`) {
					t.Fatalf("error has no param field: %s", apiErr.RawJSON())
				}
				if got := apiErr.Response.Header.Get("retry-after"); got != tt.retryAfter {
					t.Fatalf("retry-after %q, want %q", got, tt.retryAfter)
				}
				if apiErr.Response.Header.Get("x-request-id") == "" {
					t.Fatal("no x-request-id header")
				}
				if fp.Count(fakeprovider.PathChatCompletions) != 1 {
					t.Fatalf("count %d, want 1 (no retries)", fp.Count(fakeprovider.PathChatCompletions))
				}
			})
		}
	}
}

// TestOpenAIFaultsOnEveryRoute checks that fault models apply to every
// OpenAI route that takes a model.
func TestOpenAIFaultsOnEveryRoute(t *testing.T) {
	t.Parallel()
	_, ts := start(t, fakeprovider.Options{})
	client := openAIClient(ts)
	ctx := testContext(t)
	_, err := client.Embeddings.New(ctx, openai.EmbeddingNewParams{
		Model: fakeprovider.ModelError500,
		Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("x")},
	})
	checkStatus(t, err, http.StatusInternalServerError)
	_, err = client.Responses.New(ctx, responses.ResponseNewParams{
		Model: fakeprovider.ModelError429,
		Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("x")},
	})
	checkStatus(t, err, http.StatusTooManyRequests)
}

func checkStatus(t *testing.T, err error, status int) {
	t.Helper()
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != status {
		t.Fatalf("error %v, want an *openai.Error with status %d", err, status)
	}
}

func TestMalformedRequests(t *testing.T) {
	t.Parallel()
	const limit = 1 << 10
	_, ts := start(t, fakeprovider.Options{MaxBodyBytes: limit})
	big := `{"model":"x","input":"` + strings.Repeat("a", limit) + `"}`
	tests := []struct {
		name, method, path, body string
		header                   map[string]string
		status                   int
		anthropic                bool
	}{
		{"openai malformed json", "POST", fakeprovider.PathChatCompletions, `{"model":`, nil, 400, false},
		{"openai not an object", "POST", fakeprovider.PathEmbeddings, `[1,2]`, nil, 400, false},
		{"openai no model", "POST", fakeprovider.PathChatCompletions, `{"messages":[]}`, nil, 400, false},
		{"openai no key", "POST", fakeprovider.PathChatCompletions, `{}`, map[string]string{"Authorization": ""}, 401, false},
		{"openai unknown path", "POST", "/v1/nope", `{}`, nil, 404, false},
		{"openai wrong method", "GET", fakeprovider.PathChatCompletions, ``, nil, 405, false},
		{"embeddings bad format", "POST", fakeprovider.PathEmbeddings, `{"model":"e","input":"x","encoding_format":"hex"}`, nil, 400, false},
		{"embeddings no input", "POST", fakeprovider.PathEmbeddings, `{"model":"e"}`, nil, 400, false},
		{"anthropic malformed json", "POST", fakeprovider.PathMessages, `{"model`, nil, 400, true},
		{"anthropic no version", "POST", fakeprovider.PathMessages, `{"model":"c","max_tokens":1,"messages":[{"role":"user","content":"x"}]}`, map[string]string{"anthropic-version": ""}, 400, true},
		{"anthropic no max_tokens", "POST", fakeprovider.PathMessages, `{"model":"c","messages":[{"role":"user","content":"x"}]}`, nil, 400, true},
		{"anthropic no key", "POST", fakeprovider.PathMessages, `{}`, map[string]string{"x-api-key": "", "Authorization": ""}, 401, true},
		{"anthropic wrong key", "POST", fakeprovider.PathCountTokens, `{}`, map[string]string{"x-api-key": "nope"}, 401, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(testContext(t), tt.method, ts.URL+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+testKey)
			req.Header.Set("x-api-key", testKey)
			req.Header.Set("anthropic-version", "2023-06-01")
			for k, v := range tt.header {
				req.Header.Del(k)
				if v != "" {
					req.Header.Set(k, v)
				}
			}
			checkErrorResponse(t, req, tt.status, tt.anthropic)
		})
	}
	for _, tt := range []struct {
		name      string
		path      string
		chunked   bool
		anthropic bool
	}{
		{"openai body over limit", fakeprovider.PathResponses, false, false},
		{"openai chunked body over limit", fakeprovider.PathResponses, true, false},
		{"anthropic body over limit", fakeprovider.PathMessages, false, true},
		{"anthropic chunked body over limit", fakeprovider.PathMessages, true, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader = strings.NewReader(big)
			if tt.chunked {
				body = io.MultiReader(body) // hides the length: sent chunked
			}
			req, err := http.NewRequestWithContext(testContext(t), "POST", ts.URL+tt.path, body)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+testKey)
			checkErrorResponse(t, req, http.StatusRequestEntityTooLarge, tt.anthropic)
		})
	}
}

// checkErrorResponse sends req and checks the answer has status and the
// provider's exact error shape.
func checkErrorResponse(t *testing.T, req *http.Request, status int, anthropicShape bool) {
	t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("Do: %v", err)
	}
	defer res.Body.Close()
	if res.StatusCode != status {
		t.Fatalf("status %d, want %d", res.StatusCode, status)
	}
	var body map[string]json.RawMessage
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		t.Fatalf("decode: %v", err)
	}
	var inner map[string]json.RawMessage
	if err := json.Unmarshal(body["error"], &inner); err != nil {
		t.Fatalf("error object: %v", err)
	}
	if anthropicShape {
		if string(body["type"]) != `"error"` || len(inner) != 2 || inner["type"] == nil || inner["message"] == nil {
			t.Fatalf("not an Anthropic error: %v", body)
		}
		if res.Header.Get("request-id") == "" {
			t.Fatal("no request-id header")
		}
		return
	}
	for _, k := range []string{"message", "type", "param", "code"} {
		if inner[k] == nil {
			t.Fatalf("OpenAI error lacks %q: %v", k, inner)
		}
	}
	if len(body) != 1 || len(inner) != 4 || res.Header.Get("x-request-id") == "" {
		t.Fatalf("not an OpenAI error: %v", body)
	}
}
