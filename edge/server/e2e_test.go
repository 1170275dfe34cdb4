package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/responses"
	"github.com/openai/openai-go/v3/shared"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/fakeprovider"
	"github.com/persiv/codex/edge/pricing"
	"github.com/persiv/codex/edge/provider"
	antformat "github.com/persiv/codex/edge/provider/anthropic"
	oaiformat "github.com/persiv/codex/edge/provider/openai"
)

// sdkCase calls one endpoint through an SDK and summarises what the SDK
// decoded, so an answer through the edge can be compared with the same
// request made directly to the provider.
type sdkCase struct {
	name     string
	provider edge.Provider
	endpoint provider.Endpoint
	path     string // fake provider path, for its expected usage
	model    string
	stream   bool
	call     func(ctx context.Context, oc openai.Client, ac anthropic.Client) (string, error)
}

func j(v any) string { b, _ := json.Marshal(v); return string(b) }

var sdkCases = []sdkCase{
	{"chat json", edge.OpenAI, oaiformat.ChatCompletions, fakeprovider.PathChatCompletions, "gpt-4o-mini", false,
		func(ctx context.Context, oc openai.Client, _ anthropic.Client) (string, error) {
			r, err := oc.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "gpt-4o-mini",
				Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("be brief"), openai.UserMessage("hello parity world")}})
			if err != nil {
				return "", err
			}
			return j([]any{r.Model, r.Choices[0].Message.Content, r.Choices[0].FinishReason, r.Usage.RawJSON()}), nil
		}},
	{"chat json tool call", edge.OpenAI, oaiformat.ChatCompletions, fakeprovider.PathChatCompletions, "gpt-4o", false,
		func(ctx context.Context, oc openai.Client, _ anthropic.Client) (string, error) {
			r, err := oc.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "gpt-4o",
				Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("weather in Oslo")},
				Tools:    []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{Name: "get_weather"})}})
			if err != nil {
				return "", err
			}
			tc := r.Choices[0].Message.ToolCalls
			return j([]any{tc[0].Function.Name, tc[0].Function.Arguments, r.Choices[0].FinishReason, r.Usage.RawJSON()}), nil
		}},
	{"chat stream with usage", edge.OpenAI, oaiformat.ChatCompletions, fakeprovider.PathChatCompletions, "gpt-5", true,
		func(ctx context.Context, oc openai.Client, _ anthropic.Client) (string, error) {
			return chatStream(ctx, oc, "gpt-5", true)
		}},
	{"chat stream without usage", edge.OpenAI, oaiformat.ChatCompletions, fakeprovider.PathChatCompletions, "gpt-4o-mini", true,
		func(ctx context.Context, oc openai.Client, _ anthropic.Client) (string, error) {
			return chatStream(ctx, oc, "gpt-4o-mini", false)
		}},
	{"responses json", edge.OpenAI, oaiformat.Responses, fakeprovider.PathResponses, "gpt-5", false,
		func(ctx context.Context, oc openai.Client, _ anthropic.Client) (string, error) {
			r, err := oc.Responses.New(ctx, responses.ResponseNewParams{Model: "gpt-5",
				Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("responses parity")}})
			if err != nil {
				return "", err
			}
			return j([]any{r.OutputText(), r.Status, r.Usage.RawJSON()}), nil
		}},
	{"responses stream", edge.OpenAI, oaiformat.Responses, fakeprovider.PathResponses, "gpt-4.1", true,
		func(ctx context.Context, oc openai.Client, _ anthropic.Client) (string, error) {
			s := oc.Responses.NewStreaming(ctx, responses.ResponseNewParams{Model: "gpt-4.1",
				Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("stream the responses parity")}})
			var types []string
			var text strings.Builder
			var final responses.Response
			for s.Next() {
				ev := s.Current()
				types = append(types, ev.Type)
				switch e := ev.AsAny().(type) {
				case responses.ResponseTextDeltaEvent:
					text.WriteString(e.Delta)
				case responses.ResponseCompletedEvent:
					final = e.Response
				}
			}
			return j([]any{types, text.String(), final.Usage.RawJSON()}), s.Err()
		}},
	{"embeddings", edge.OpenAI, oaiformat.Embeddings, fakeprovider.PathEmbeddings, "text-embedding-3-small", false,
		func(ctx context.Context, oc openai.Client, _ anthropic.Client) (string, error) {
			r, err := oc.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: "text-embedding-3-small",
				Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"alpha beta", "gamma"}}})
			if err != nil {
				return "", err
			}
			return j([]any{r.Data[0].Embedding, r.Data[1].Embedding, r.Usage.RawJSON()}), nil
		}},
	{"openai models", edge.OpenAI, oaiformat.Models, "", "", false,
		func(ctx context.Context, oc openai.Client, _ anthropic.Client) (string, error) {
			p, err := oc.Models.List(ctx)
			if err != nil {
				return "", err
			}
			var ids []string
			for _, m := range p.Data {
				ids = append(ids, m.ID)
			}
			return j(ids), nil
		}},
	{"messages json with cache", edge.Anthropic, antformat.Messages, fakeprovider.PathMessages, "claude-sonnet-4-5", false,
		func(ctx context.Context, _ openai.Client, ac anthropic.Client) (string, error) {
			q := anthropic.TextBlockParam{Text: "cached question for parity", CacheControl: anthropic.NewCacheControlEphemeralParam()}
			m, err := ac.Messages.New(ctx, anthropic.MessageNewParams{Model: "claude-sonnet-4-5", MaxTokens: 64,
				Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.ContentBlockParamUnion{OfText: &q})}})
			if err != nil {
				return "", err
			}
			return j([]any{m.Content[0].AsText().Text, m.StopReason, m.Usage.RawJSON()}), nil
		}},
	{"messages stream tool use", edge.Anthropic, antformat.Messages, fakeprovider.PathMessages, "claude-haiku-4-5", true,
		func(ctx context.Context, _ openai.Client, ac anthropic.Client) (string, error) {
			s := ac.Messages.NewStreaming(ctx, anthropic.MessageNewParams{Model: "claude-haiku-4-5", MaxTokens: 64,
				Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("use the tool please"))},
				Tools: []anthropic.ToolUnionParam{{OfTool: &anthropic.ToolParam{Name: "lookup",
					InputSchema: anthropic.ToolInputSchemaParam{Properties: map[string]any{}}}}}})
			var msg anthropic.Message
			var types []string
			for s.Next() {
				ev := s.Current()
				types = append(types, ev.Type)
				if err := msg.Accumulate(ev); err != nil {
					return "", err
				}
			}
			use := msg.Content[0].AsToolUse()
			return j([]any{types, use.Name, string(use.Input), msg.StopReason, msg.Usage.InputTokens, msg.Usage.OutputTokens}), s.Err()
		}},
	{"count tokens", edge.Anthropic, antformat.CountTokens, fakeprovider.PathCountTokens, "claude-sonnet-4-5", false,
		func(ctx context.Context, _ openai.Client, ac anthropic.Client) (string, error) {
			r, err := ac.Messages.CountTokens(ctx, anthropic.MessageCountTokensParams{Model: "claude-sonnet-4-5",
				Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("count these four"))}})
			if err != nil {
				return "", err
			}
			return j(r.InputTokens), nil
		}},
	{"anthropic models", edge.Anthropic, antformat.Models, "", "", false,
		func(ctx context.Context, _ openai.Client, ac anthropic.Client) (string, error) {
			p, err := ac.Models.List(ctx, anthropic.ModelListParams{})
			if err != nil {
				return "", err
			}
			var ids []string
			for _, m := range p.Data {
				ids = append(ids, m.ID)
			}
			return j(ids), nil
		}},
}

func chatStream(ctx context.Context, oc openai.Client, model string, includeUsage bool) (string, error) {
	p := openai.ChatCompletionNewParams{Model: model, Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("stream parity words")}}
	if includeUsage {
		p.StreamOptions.IncludeUsage = openai.Bool(true)
	}
	s := oc.Chat.Completions.NewStreaming(ctx, p)
	var acc openai.ChatCompletionAccumulator
	chunks, usageChunks := 0, 0
	for s.Next() {
		c := s.Current()
		chunks++
		acc.AddChunk(c)
		if len(c.Choices) == 0 && c.JSON.Usage.Valid() {
			usageChunks++
		}
	}
	return j([]any{acc.Choices[0].Message.Content, acc.Choices[0].FinishReason, chunks, usageChunks, acc.Usage.TotalTokens}), s.Err()
}

func formatOf(p edge.Provider) provider.Format {
	if p == edge.Anthropic {
		return antformat.Format{}
	}
	return oaiformat.Format{}
}

// wantUsage is the edge's reading of what the fake provider reported.
func wantUsage(p edge.Provider, endpoint provider.Endpoint, u fakeprovider.Usage) edge.Usage {
	k := edge.Known
	switch {
	case endpoint == oaiformat.Embeddings:
		return edge.Usage{Input: k(u.InputTokens)}
	case endpoint == antformat.CountTokens:
		return edge.Usage{}
	case p == edge.Anthropic:
		return edge.Usage{Input: k(u.InputTokens), CachedInput: k(u.CacheReadTokens), CacheWrite: k(u.CacheCreationTokens), Output: k(u.OutputTokens)}
	}
	return edge.Usage{Input: k(u.InputTokens - u.CachedTokens), CachedInput: k(u.CachedTokens), Output: k(u.OutputTokens), Reasoning: k(u.ReasoningTokens)}
}

// TestSDKsGetTheProvidersAnswers drives every endpoint with the official
// SDKs, through the edge and directly, and checks the answers match and the
// recorded metadata equals the provider's usage exactly.
func TestSDKsGetTheProvidersAnswers(t *testing.T) {
	h := newHarness(t, fakeprovider.Options{Chunks: 5}, nil)
	tn := h.addOrg("acme")
	prices, err := pricing.Load(nil)
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		c     sdkCase
		usage edge.Usage
	}
	var wants []want
	for _, c := range sdkCases {
		t.Run(c.name, func(t *testing.T) {
			ctx := ctxT(t)
			direct, err := c.call(ctx, h.directOpenAI(tn), h.directAnthropic(tn))
			if err != nil {
				t.Fatalf("direct: %v", err)
			}
			through, err := c.call(ctx, h.openai(tn.key), h.anthropic(tn.key))
			if err != nil {
				t.Fatalf("through the edge: %v", err)
			}
			if through != direct {
				t.Fatalf("through the edge:\n%s\ndirect:\n%s", through, direct)
			}
			reqs := h.fake.Requests()
			last := reqs[len(reqs)-1]
			if c.provider == edge.OpenAI && last.Header.Get("Authorization") != "Bearer "+tn.providerKey ||
				c.provider == edge.Anthropic && last.Header.Get("X-Api-Key") != tn.providerKey {
				t.Fatalf("provider got credentials %q / %q", last.Header.Get("Authorization"), last.Header.Get("X-Api-Key"))
			}
			if strings.Contains(fmt.Sprint(last.Header), tn.key) {
				t.Fatal("the gateway key reached the provider")
			}
			w := want{c: c}
			if c.path != "" {
				u, err := fakeprovider.ExpectedUsage(c.path, last.Body)
				if err != nil {
					t.Fatal(err)
				}
				w.usage = wantUsage(c.provider, c.endpoint, u)
			}
			wants = append(wants, w)
		})
	}
	if t.Failed() {
		return
	}
	recs := h.records(tn.orgID, len(wants))
	byOrder := map[int]edge.RequestRecord{}
	for i, r := range recs {
		byOrder[i] = r
	}
	for i, w := range wants {
		r := byOrder[i]
		if r.Endpoint != string(w.c.endpoint) || r.Provider != w.c.provider || r.Status != 200 || r.KeyID != tn.keyID || r.Stream != w.c.stream {
			t.Errorf("%s: record %+v", w.c.name, r)
			continue
		}
		if r.Usage != w.usage {
			t.Errorf("%s: recorded usage %+v, provider reported %+v", w.c.name, r.Usage, w.usage)
		}
		if w.c.model != "" && !strings.HasPrefix(r.Model, w.c.model) {
			t.Errorf("%s: model %q", w.c.name, r.Model)
		}
		if w.c.path != "" && w.c.endpoint != antformat.CountTokens {
			cost, known := prices.Cost(formatOf(r.Provider), w.c.endpoint, r.Model, w.usage)
			if !known || r.CostNanoUSD != cost || !r.CostKnown || cost <= 0 {
				t.Errorf("%s: cost %d (known %v), want %d (known %v)", w.c.name, r.CostNanoUSD, r.CostKnown, cost, known)
			}
		}
		if r.Fingerprint == "" && w.c.path != "" {
			t.Errorf("%s: no fingerprint", w.c.name)
		}
		if r.Latency <= 0 || r.UpstreamLatency <= 0 || r.UpstreamLatency > r.Latency {
			t.Errorf("%s: latency %v upstream %v", w.c.name, r.Latency, r.UpstreamLatency)
		}
	}
}
