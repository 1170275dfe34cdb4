package fakeprovider_test

import (
	"context"
	"fmt"
	"net/http/httptest"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/persiv/codex/edge/fakeprovider"
)

// The fake is an http.Handler: serve it with httptest and point an SDK's
// base URL at it.
func Example() {
	fp := fakeprovider.New(fakeprovider.Options{OpenAIKey: "sk-test"})
	ts := httptest.NewServer(fp)
	defer ts.Close()

	client := openai.NewClient(option.WithBaseURL(ts.URL+"/v1/"), option.WithAPIKey("sk-test"))
	res, err := client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model:    "gpt-4o",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello there")},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	want, _ := fakeprovider.ExpectedUsage(fakeprovider.PathChatCompletions, fp.Requests()[0].Body)
	fmt.Println(res.Choices[0].Message.Content)
	fmt.Println(res.Usage.PromptTokens == want.InputTokens, res.Usage.PromptTokensDetails.CachedTokens)
	fmt.Println(fp.Count(fakeprovider.PathChatCompletions))
	// Output:
	// echo: hello there
	// true 5
	// 1
}
