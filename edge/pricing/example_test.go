package pricing_test

import (
	"fmt"

	"github.com/persiv/codex/edge/pricing"
	"github.com/persiv/codex/edge/provider/anthropic"
)

func ExampleTable_CostResult() {
	body := []byte(`{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929",
		"content":[],"stop_reason":"end_turn","usage":{"input_tokens":21,"cache_creation_input_tokens":2051,
		"cache_read_input_tokens":12000,"cache_creation":{"ephemeral_5m_input_tokens":2051,"ephemeral_1h_input_tokens":0},
		"output_tokens":393,"service_tier":"standard"}}`)
	r, err := anthropic.Format{}.ParseUsage(anthropic.Messages, body)
	if err != nil {
		panic(err)
	}
	table, err := pricing.Load(nil)
	if err != nil {
		panic(err)
	}
	nano, known := table.CostResult(anthropic.Format{}, anthropic.Messages, r)
	fmt.Println(r.Model, r.Usage.Input.N, r.Usage.CachedInput.N, r.Usage.CacheWrite.N, r.Usage.Output.N)
	fmt.Println(nano, known)
	// Output:
	// claude-sonnet-4-5-20250929 21 12000 2051 393
	// 17249250 true
}
