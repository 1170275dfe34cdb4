package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/packages/ssestream"
	"github.com/openai/openai-go/v3/responses"
	"github.com/openai/openai-go/v3/shared"
	goredis "github.com/redis/go-redis/v9"
)

type redisConn = goredis.Client

func newRedisConn(t *testing.T, url string) *redisConn {
	t.Helper()
	opt, err := goredis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := goredis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	return c
}

func streamParams(prompt string, tool bool) openai.ChatCompletionNewParams {
	p := openai.ChatCompletionNewParams{Model: "gpt-4o-mini", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)}}
	if tool {
		p.Tools = []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{Name: "get_weather"})}
	}
	return p
}

func chatJSON(oc openai.Client, tool bool) func(context.Context, string) (answer, error) {
	return func(ctx context.Context, prompt string) (answer, error) {
		r, err := oc.Chat.Completions.New(ctx, streamParams(prompt, tool))
		if err != nil {
			return answer{}, err
		}
		a := answer{Text: r.Choices[0].Message.Content, Finish: r.Choices[0].FinishReason, In: r.Usage.PromptTokens, Out: r.Usage.CompletionTokens}
		if tc := r.Choices[0].Message.ToolCalls; len(tc) > 0 {
			a.Tool, a.Args = tc[0].Function.Name, tc[0].Function.Arguments
		}
		return a, nil
	}
}

func chatSSE(oc openai.Client, tool, includeUsage bool) func(context.Context, string) (answer, error) {
	return func(ctx context.Context, prompt string) (answer, error) {
		p := streamParams(prompt, tool)
		if includeUsage {
			p.StreamOptions.IncludeUsage = openai.Bool(true)
		}
		return collectChat(oc.Chat.Completions.NewStreaming(ctx, p), nil)
	}
}

// collectChat reads a chat stream to its end; joined, when set, is told
// once the first chunk arrived.
func collectChat(s *ssestream.Stream[openai.ChatCompletionChunk], joined chan<- struct{}) (answer, error) {
	var acc openai.ChatCompletionAccumulator
	first := true
	for s.Next() {
		acc.AddChunk(s.Current())
		if first && joined != nil {
			joined <- struct{}{}
		}
		first = false
	}
	if err := s.Err(); err != nil {
		return answer{}, err
	}
	if len(acc.Choices) == 0 {
		return answer{}, errors.New("no choices")
	}
	c := acc.Choices[0]
	a := answer{Text: c.Message.Content, Finish: c.FinishReason, In: acc.Usage.PromptTokens, Out: acc.Usage.CompletionTokens}
	if len(c.Message.ToolCalls) > 0 {
		a.Tool, a.Args = c.Message.ToolCalls[0].Function.Name, c.Message.ToolCalls[0].Function.Arguments
	}
	return a, nil
}

func responsesParams(prompt string, tool bool) responses.ResponseNewParams {
	p := responses.ResponseNewParams{Model: "gpt-4.1", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String(prompt)}}
	if tool {
		p.Tools = []responses.ToolUnionParam{{OfFunction: &responses.FunctionToolParam{Name: "get_weather", Parameters: map[string]any{}}}}
	}
	return p
}

func responseAnswer(r responses.Response) answer {
	a := answer{Text: r.OutputText(), Finish: string(r.Status), In: r.Usage.InputTokens, Out: r.Usage.OutputTokens}
	for _, it := range r.Output {
		if it.Type == "function_call" {
			var fc struct{ Name, Arguments string }
			if err := json.Unmarshal([]byte(it.RawJSON()), &fc); err != nil {
				fc.Arguments = "undecodable: " + err.Error() // fails the comparison
			}
			a.Tool, a.Args = fc.Name, fc.Arguments
		}
	}
	return a
}

func responsesJSON(oc openai.Client, tool bool) func(context.Context, string) (answer, error) {
	return func(ctx context.Context, prompt string) (answer, error) {
		r, err := oc.Responses.New(ctx, responsesParams(prompt, tool))
		if err != nil {
			return answer{}, err
		}
		return responseAnswer(*r), nil
	}
}

func responsesSSE(oc openai.Client, tool bool) func(context.Context, string) (answer, error) {
	return func(ctx context.Context, prompt string) (answer, error) {
		s := oc.Responses.NewStreaming(ctx, responsesParams(prompt, tool))
		var text, args strings.Builder
		var final *responses.Response
		for s.Next() {
			switch e := s.Current().AsAny().(type) {
			case responses.ResponseTextDeltaEvent:
				text.WriteString(e.Delta)
			case responses.ResponseFunctionCallArgumentsDeltaEvent:
				args.WriteString(e.Delta)
			case responses.ResponseCompletedEvent:
				final = &e.Response
			}
		}
		if err := s.Err(); err != nil {
			return answer{}, err
		}
		if final == nil {
			return answer{}, errors.New("no response.completed")
		}
		a := responseAnswer(*final)
		// The deltas must add up to the final answer.
		if text.String() != a.Text || args.String() != a.Args {
			return answer{}, errors.New("deltas do not add up to the completed response")
		}
		return a, nil
	}
}

func messagesParams(prompt string, tool bool) anthropic.MessageNewParams {
	p := anthropic.MessageNewParams{Model: "claude-haiku-4-5", MaxTokens: 64,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(prompt))}}
	if tool {
		p.Tools = []anthropic.ToolUnionParam{{OfTool: &anthropic.ToolParam{Name: "lookup",
			InputSchema: anthropic.ToolInputSchemaParam{Properties: map[string]any{}}}}}
	}
	return p
}

func messageAnswer(m anthropic.Message) answer {
	a := answer{Finish: string(m.StopReason), In: m.Usage.InputTokens, Out: m.Usage.OutputTokens}
	for _, c := range m.Content {
		switch c.Type {
		case "text":
			a.Text += c.AsText().Text
		case "tool_use":
			u := c.AsToolUse()
			a.Tool = u.Name
			var v any
			if err := json.Unmarshal(u.Input, &v); err != nil {
				a.Args = "undecodable: " + err.Error() // fails the comparison
				break
			}
			b, _ := json.Marshal(v) // compare inputs as JSON values
			a.Args = string(b)
		}
	}
	return a
}

func messagesJSON(ac anthropic.Client, tool bool) func(context.Context, string) (answer, error) {
	return func(ctx context.Context, prompt string) (answer, error) {
		m, err := ac.Messages.New(ctx, messagesParams(prompt, tool))
		if err != nil {
			return answer{}, err
		}
		return messageAnswer(*m), nil
	}
}

func messagesSSE(ac anthropic.Client, tool bool) func(context.Context, string) (answer, error) {
	return func(ctx context.Context, prompt string) (answer, error) {
		s := ac.Messages.NewStreaming(ctx, messagesParams(prompt, tool))
		var m anthropic.Message
		for s.Next() {
			if err := m.Accumulate(s.Current()); err != nil {
				return answer{}, err
			}
		}
		if err := s.Err(); err != nil {
			return answer{}, err
		}
		return messageAnswer(m), nil
	}
}
