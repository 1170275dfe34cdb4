package pricing

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/provider"
	"github.com/persiv/codex/edge/provider/anthropic"
	"github.com/persiv/codex/edge/provider/openai"
	"github.com/persiv/codex/edge/usage"
)

func format(p edge.Provider) provider.Format {
	if p == edge.Anthropic {
		return anthropic.Format{}
	}
	return openai.Format{}
}

func k(n int64) edge.Count { return edge.Known(n) }

func mustLoad(t *testing.T, override string) *Table {
	t.Helper()
	var tab *Table
	var err error
	if override == "" {
		tab, err = Load(nil)
	} else {
		tab, err = Load(strings.NewReader(override))
	}
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return tab
}

func TestEmbeddedTable(t *testing.T) {
	t.Parallel()
	tab := mustLoad(t, "")
	if tab.Version() != "2025-11-25" {
		t.Errorf("Version = %q", tab.Version())
	}
	want := map[edge.Provider][]string{
		edge.OpenAI: {"gpt-5", "gpt-5-mini", "gpt-5-nano", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano",
			"gpt-4o", "gpt-4o-mini", "o1", "o3", "o3-mini", "o4-mini",
			"text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002"},
		edge.Anthropic: {"claude-opus-4-5", "claude-opus-4-1", "claude-opus-4", "claude-sonnet-4-5", "claude-sonnet-4",
			"claude-3-7-sonnet", "claude-haiku-4-5", "claude-3-5-haiku", "claude-3-haiku"},
	}
	for p, names := range want {
		for _, n := range names {
			name, pr, ok := tab.Lookup(p, n)
			if !ok || name != n {
				t.Errorf("%s %s: not in the table", p, n)
				continue
			}
			if p == edge.Anthropic && n != "claude-3-haiku" {
				// Anthropic's published multipliers: reads 0.1×, 5-minute
				// writes 1.25×, 1-hour writes 2× the input rate (Claude 3
				// Haiku's published rates, 0.03 and 0.30, are not multiples).
				in := pr.Input.NanoUSDPerMTok
				if pr.CachedInput.NanoUSDPerMTok*10 != in || pr.CacheWrite.NanoUSDPerMTok*4 != in*5 || pr.CacheWrite1h.NanoUSDPerMTok != 2*in {
					t.Errorf("%s: cache rates %+v off the input rate %d", n, pr.Rates, in)
				}
			}
		}
	}
}

func TestLookup(t *testing.T) {
	t.Parallel()
	tab := mustLoad(t, "")
	tests := []struct {
		p     edge.Provider
		model string
		want  string // "" for not priced
	}{
		{edge.OpenAI, "gpt-4o", "gpt-4o"},
		{edge.OpenAI, "gpt-4o-2024-08-06", "gpt-4o"},
		{edge.OpenAI, "gpt-4o-2024-11-20", "gpt-4o"},
		{edge.OpenAI, "gpt-4o-2024-05-13", "gpt-4o-2024-05-13"},
		{edge.OpenAI, "gpt-4o-mini-2024-07-18", "gpt-4o-mini"},
		{edge.OpenAI, "gpt-4o-mini-audio-preview-2024-12-17", ""},
		{edge.OpenAI, "gpt-4o-audio-preview-2024-12-17", ""},
		{edge.OpenAI, "gpt-4o-mini-search-preview", ""},
		{edge.OpenAI, "gpt-4o-realtime-preview", ""},
		{edge.OpenAI, "chatgpt-4o-latest", ""},
		{edge.OpenAI, "gpt-5-chat-latest", ""},
		{edge.OpenAI, "gpt-5-2025-08-07", "gpt-5"},
		{edge.OpenAI, "gpt-5-mini-2025-08-07", "gpt-5-mini"},
		{edge.OpenAI, "gpt-5-nano-2025-08-07", "gpt-5-nano"},
		{edge.OpenAI, "gpt-5-codex", ""},
		{edge.OpenAI, "gpt-5.1-2025-11-13", "gpt-5.1"},
		{edge.OpenAI, "gpt-5.2", ""},
		{edge.OpenAI, "gpt-4.1-2025-04-14", "gpt-4.1"},
		{edge.OpenAI, "gpt-4.1-mini-2025-04-14", "gpt-4.1-mini"},
		{edge.OpenAI, "gpt-4.1-nano-2025-04-14", "gpt-4.1-nano"},
		{edge.OpenAI, "o1-2024-12-17", "o1"},
		{edge.OpenAI, "o1-pro", ""},
		{edge.OpenAI, "o1-preview-2024-09-12", ""},
		{edge.OpenAI, "o3-2025-04-16", "o3"},
		{edge.OpenAI, "o3-pro-2025-06-10", ""},
		{edge.OpenAI, "o3-mini-2025-01-31", "o3-mini"},
		{edge.OpenAI, "o4-mini-2025-04-16", "o4-mini"},
		{edge.OpenAI, "o4-mini-deep-research", ""},
		{edge.OpenAI, "gpt-4o-2024-13-06", ""}, // not a date
		{edge.OpenAI, "gpt-4o-2024-08-00", ""},
		{edge.OpenAI, "gpt-4o-2024-0806", ""},
		{edge.OpenAI, "-2024-08-06", ""},
		{edge.OpenAI, "", ""},
		{edge.OpenAI, "text-embedding-3-small", "text-embedding-3-small"},
		{edge.OpenAI, "claude-sonnet-4-5", ""},
		{edge.Anthropic, "claude-sonnet-4-5-20250929", "claude-sonnet-4-5"},
		{edge.Anthropic, "claude-sonnet-4-20250514", "claude-sonnet-4"},
		{edge.Anthropic, "claude-opus-4-5-20251101", "claude-opus-4-5"},
		{edge.Anthropic, "claude-opus-4-1-20250805", "claude-opus-4-1"},
		{edge.Anthropic, "claude-opus-4-20250514", "claude-opus-4"},
		{edge.Anthropic, "claude-haiku-4-5-20251001", "claude-haiku-4-5"},
		{edge.Anthropic, "claude-3-7-sonnet-20250219", "claude-3-7-sonnet"},
		{edge.Anthropic, "claude-3-7-sonnet-latest", "claude-3-7-sonnet"},
		{edge.Anthropic, "claude-3-5-haiku-20241022", "claude-3-5-haiku"},
		{edge.Anthropic, "claude-3-haiku-20240307", "claude-3-haiku"},
		{edge.Anthropic, "claude-3-5-sonnet-20241022", ""},
		{edge.Anthropic, "claude-opus-4-6", ""},
		{edge.Anthropic, "claude-sonnet-4-5-20250929-v1:0", ""},
		{edge.Anthropic, "gpt-4o", ""},
		{"mistral", "gpt-4o", ""},
	}
	for _, tt := range tests {
		name, _, ok := tab.Lookup(tt.p, tt.model)
		if name != tt.want || ok != (tt.want != "") {
			t.Errorf("Lookup(%s, %q) = %q, %v; want %q", tt.p, tt.model, name, ok, tt.want)
		}
	}
}

func TestCost(t *testing.T) {
	t.Parallel()
	tab := mustLoad(t, "")
	tests := []struct {
		name     string
		p        edge.Provider
		endpoint provider.Endpoint
		model    string
		u        edge.Usage
		want     int64
		known    bool
	}{
		// 86×2.50 + 1920×1.25 + 300×10.00 = 5615 USD per million tokens.
		{"openai cached chat", edge.OpenAI, openai.ChatCompletions, "gpt-4o-2024-08-06",
			edge.Usage{Input: k(86), CachedInput: k(1920), Output: k(300), Reasoning: k(0)}, 5_615_000, true},
		// Reasoning is inside Output: not added again.
		{"openai reasoning", edge.OpenAI, openai.Responses, "o3-mini-2025-01-31",
			edge.Usage{Input: k(1000), CachedInput: k(0), Output: k(500), Reasoning: k(400)}, 1000*1_100 + 500*4_400, true},
		// 1000×0.15 + 100×0.60 = 210; as gpt-4o it would be 3500.
		{"gpt-4o-mini snapshot is not gpt-4o", edge.OpenAI, openai.ChatCompletions, "gpt-4o-mini-2024-07-18",
			edge.Usage{Input: k(1000), CachedInput: k(0), Output: k(100)}, 210_000, true},
		{"openai cached input unknown", edge.OpenAI, openai.ChatCompletions, "gpt-4o",
			edge.Usage{Input: k(1000), Output: k(100)}, 0, false},
		// A model without caching has no cached-input rate: the unknown
		// count is no cost. 100×5 + 10×15 = 650.
		{"model without caching", edge.OpenAI, openai.ChatCompletions, "gpt-4o-2024-05-13",
			edge.Usage{Input: k(100), Output: k(10)}, 650_000, true},
		{"model without caching reporting cached tokens", edge.OpenAI, openai.ChatCompletions, "gpt-4o-2024-05-13",
			edge.Usage{Input: k(100), CachedInput: k(50), Output: k(10)}, 0, false},
		// Cache writes of a model without a write rate bill as input:
		// 200×1.25 + 2000×0.125 + 400×1.25 + 10×10 = 1100.
		{"openai cache writes without a write rate", edge.OpenAI, openai.Responses, "gpt-5",
			edge.Usage{Input: k(200), CachedInput: k(2000), CacheWrite: k(400), Output: k(10)}, 1_100_000, true},
		{"openai output unknown", edge.OpenAI, openai.ChatCompletions, "gpt-4o",
			edge.Usage{Input: k(10), CachedInput: k(0)}, 0, false},
		{"openai input unknown", edge.OpenAI, openai.ChatCompletions, "gpt-4o",
			edge.Usage{CachedInput: k(0), Output: k(10)}, 0, false},
		// 8 × 0.02 USD per million = 160 nano-USD.
		{"embeddings", edge.OpenAI, openai.Embeddings, "text-embedding-3-small",
			edge.Usage{Input: k(8)}, 160, true},
		{"embeddings large", edge.OpenAI, openai.Embeddings, "text-embedding-3-large",
			edge.Usage{Input: k(1_000_000)}, 130_000_000, true},
		{"embeddings with a chat model", edge.OpenAI, openai.Embeddings, "gpt-4o",
			edge.Usage{Input: k(8)}, 0, false},
		// 21×3 + 12000×0.30 + 2051×3.75 + 393×15 = 17249.25.
		{"anthropic cache writes and reads", edge.Anthropic, anthropic.Messages, "claude-sonnet-4-5-20250929",
			edge.Usage{Input: k(21), CachedInput: k(12000), CacheWrite: k(2051), Output: k(393)}, 17_249_250, true},
		// 10×15 + 5×1.50 + 20×18.75 + 7×75 = 1057.5.
		{"anthropic opus 4.1", edge.Anthropic, anthropic.Messages, "claude-opus-4-1-20250805",
			edge.Usage{Input: k(10), CachedInput: k(5), CacheWrite: k(20), Output: k(7), Reasoning: k(3)}, 1_057_500, true},
		{"anthropic cache write unknown", edge.Anthropic, anthropic.Messages, "claude-3-haiku-20240307",
			edge.Usage{Input: k(10), CachedInput: k(0), Output: k(25)}, 0, false},
		{"anthropic cache read unknown", edge.Anthropic, anthropic.Messages, "claude-3-haiku-20240307",
			edge.Usage{Input: k(10), CacheWrite: k(0), Output: k(25)}, 0, false},
		{"anthropic output unknown (stream cut)", edge.Anthropic, anthropic.Messages, "claude-haiku-4-5",
			edge.Usage{Input: k(10), CachedInput: k(0), CacheWrite: k(0)}, 0, false},
		// Long context: 150000+40000+20000 > 200000, so
		// 150000×6 + 40000×0.60 + 20000×7.50 + 1000×22.50 = 1096500.
		{"anthropic long context", edge.Anthropic, anthropic.Messages, "claude-sonnet-4-20250514",
			edge.Usage{Input: k(150000), CachedInput: k(40000), CacheWrite: k(20000), Output: k(1000)}, 1_096_500_000, true},
		// Exactly 200000: base rates. 140000×3 + 40000×0.30 + 20000×3.75 + 1000×15 = 522000.
		{"anthropic at the long-context threshold", edge.Anthropic, anthropic.Messages, "claude-sonnet-4-5",
			edge.Usage{Input: k(140000), CachedInput: k(40000), CacheWrite: k(20000), Output: k(1000)}, 522_000_000, true},
		{"long context undecidable", edge.Anthropic, anthropic.Messages, "claude-sonnet-4-5",
			edge.Usage{Input: k(140000), CacheWrite: k(20000), Output: k(1000)}, 0, false},
		{"unknown model", edge.OpenAI, openai.ChatCompletions, "gpt-4o-audio-preview",
			edge.Usage{Input: k(10), CachedInput: k(0), Output: k(10)}, 0, false},
		{"empty model", edge.Anthropic, anthropic.Messages, "",
			edge.Usage{Input: k(10), CachedInput: k(0), CacheWrite: k(0), Output: k(10)}, 0, false},
		{"models list is free", edge.OpenAI, openai.Models, "", edge.Usage{}, 0, true},
		{"count_tokens is free", edge.Anthropic, anthropic.CountTokens, "claude-unknown", edge.Usage{}, 0, true},
		{"count_tokens on openai", edge.OpenAI, anthropic.CountTokens, "gpt-4o", edge.Usage{Input: k(1)}, 0, false},
		{"messages on openai", edge.OpenAI, anthropic.Messages, "gpt-4o",
			edge.Usage{Input: k(10), CachedInput: k(0), Output: k(10)}, 0, false},
		{"unknown endpoint", edge.OpenAI, "completions", "gpt-4o",
			edge.Usage{Input: k(10), CachedInput: k(0), Output: k(10)}, 0, false},
		{"zero usage", edge.OpenAI, openai.ChatCompletions, "gpt-4o",
			edge.Usage{Input: k(0), CachedInput: k(0), Output: k(0)}, 0, true},
		{"overflow is unknown", edge.Anthropic, anthropic.Messages, "claude-opus-4-1",
			edge.Usage{Input: k(1 << 62), CachedInput: k(0), CacheWrite: k(0), Output: k(1 << 62)}, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, known := tab.Cost(format(tt.p), tt.endpoint, tt.model, tt.u)
			if got != tt.want || known != tt.known {
				t.Errorf("Cost = %d, %v; want %d, %v", got, known, tt.want, tt.known)
			}
		})
	}
}

func TestCostResult(t *testing.T) {
	t.Parallel()
	tab := mustLoad(t, `{"providers":{"anthropic":{"claude-no-1h":{"input":"1","cached_input":"0.1","cache_write":"1.25","output":"5"}}}}`)
	sonnet := edge.Usage{Input: k(21), CachedInput: k(12000), CacheWrite: k(2051), Output: k(393)}
	tests := []struct {
		name     string
		p        edge.Provider
		endpoint provider.Endpoint
		r        usage.Result
		want     int64
		known    bool
	}{
		// 21×3 + 12000×0.30 + 1051×3.75 + 1000×6 + 393×15 = 19499.25.
		{"1-hour writes at their rate", edge.Anthropic, anthropic.Messages,
			usage.Result{Model: "claude-sonnet-4-5-20250929", Usage: sonnet, CacheWrite1h: k(1000), ServiceTier: "standard"}, 19_499_250, true},
		{"5-minute writes only", edge.Anthropic, anthropic.Messages,
			usage.Result{Model: "claude-sonnet-4-5-20250929", Usage: sonnet, CacheWrite1h: k(0)}, 17_249_250, true},
		{"1-hour share unknown", edge.Anthropic, anthropic.Messages,
			usage.Result{Model: "claude-sonnet-4-5-20250929", Usage: sonnet}, 0, false},
		{"1-hour share unknown, no writes", edge.Anthropic, anthropic.Messages,
			usage.Result{Model: "claude-haiku-4-5", Usage: edge.Usage{Input: k(10), CachedInput: k(0), CacheWrite: k(0), Output: k(2)}},
			10*1_000 + 2*5_000, true},
		{"1-hour writes on a model without the rate", edge.Anthropic, anthropic.Messages,
			usage.Result{Model: "claude-no-1h", Usage: sonnet, CacheWrite1h: k(1)}, 0, false},
		{"batch tier", edge.Anthropic, anthropic.Messages,
			usage.Result{Model: "claude-sonnet-4-5", Usage: sonnet, CacheWrite1h: k(0), ServiceTier: "batch"}, 0, false},
		{"fast speed", edge.Anthropic, anthropic.Messages,
			usage.Result{Model: "claude-opus-4-5", Usage: sonnet, CacheWrite1h: k(0), Speed: "fast"}, 0, false},
		{"server tools", edge.Anthropic, anthropic.Messages,
			usage.Result{Model: "claude-sonnet-4-5", Usage: sonnet, CacheWrite1h: k(0), Unpriced: usage.UnpricedToolCalls}, 0, false},
		{"openai default tier", edge.OpenAI, openai.ChatCompletions,
			usage.Result{Model: "gpt-4o", ServiceTier: "default", Usage: edge.Usage{Input: k(86), CachedInput: k(1920), Output: k(300)}}, 5_615_000, true},
		{"openai flex tier", edge.OpenAI, openai.Responses,
			usage.Result{Model: "o3", ServiceTier: "flex", Usage: edge.Usage{Input: k(86), CachedInput: k(0), Output: k(300)}}, 0, false},
		{"openai priority tier", edge.OpenAI, openai.Responses,
			usage.Result{Model: "gpt-5", ServiceTier: "priority", Usage: edge.Usage{Input: k(86), CachedInput: k(0), Output: k(300)}}, 0, false},
		{"count_tokens", edge.Anthropic, anthropic.CountTokens, usage.Result{}, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, known := tab.CostResult(format(tt.p), tt.endpoint, tt.r)
			if got != tt.want || known != tt.known {
				t.Errorf("CostResult = %d, %v; want %d, %v", got, known, tt.want, tt.known)
			}
		})
	}
}

func TestCostRoundsOnceAtTheEnd(t *testing.T) {
	t.Parallel()
	// 0.0000004 USD per million tokens = 400 nano-USD per million: 1000
	// tokens cost 0.4 nano-USD. Four such buckets make 1.6, rounded to 2;
	// rounding per bucket would have made 0.
	tab := mustLoad(t, `{"providers":{"openai":{"tiny":{"input":"0.0000004","cached_input":"0.0000004","cache_write":"0.0000004","output":"0.0000004"},
		"half":{"input":"0.0000005"}}}}`)
	u := edge.Usage{Input: k(1000), CachedInput: k(1000), CacheWrite: k(1000), Output: k(1000)}
	if got, known := tab.Cost(openai.Format{}, openai.ChatCompletions, "tiny", u); got != 2 || !known {
		t.Errorf("Cost = %d, %v; want 2, true", got, known)
	}
	for _, tt := range []struct{ n, want int64 }{{999, 0}, {1000, 1}, {2999, 1}, {3000, 2}} {
		got, known := tab.Cost(openai.Format{}, openai.Embeddings, "half", edge.Usage{Input: k(tt.n)})
		if got != tt.want || !known {
			t.Errorf("%d tokens at 0.0000005: Cost = %d, %v; want %d (halves round up)", tt.n, got, known, tt.want)
		}
	}
}

func TestOverride(t *testing.T) {
	t.Parallel()
	tab := mustLoad(t, `{
		"version": "2026-01-05",
		"providers": {
			"openai": {
				"gpt-4o": {"input": "2.00", "cached_input": "1.00", "output": "8.00"},
				"gpt-5.6": {"input": "2.00", "cached_input": "0.20", "cache_write": "2.50", "output": "16"},
				"o1": null
			},
			"anthropic": {
				"claude-sonnet-4-5": {"input": "3", "cached_input": "0.3", "cache_write": "3.75", "output": "15"}
			}
		}
	}`)
	if v := tab.Version(); v != "2025-11-25+2026-01-05" {
		t.Errorf("Version = %q", v)
	}
	u := edge.Usage{Input: k(1000), CachedInput: k(0), Output: k(100)}
	for _, tt := range []struct {
		p     edge.Provider
		model string
		u     edge.Usage
		want  int64
		known bool
	}{
		{edge.OpenAI, "gpt-4o-2024-08-06", u, 1000*2_000 + 100*8_000, true},                                // replaced
		{edge.OpenAI, "gpt-4o-mini", u, 1000*150 + 100*600, true},                                          // untouched
		{edge.OpenAI, "o1-2024-12-17", u, 0, false},                                                        // removed
		{edge.OpenAI, "gpt-5.6", edge.Usage{Input: k(200), CachedInput: k(2000), Output: k(10)}, 0, false}, // write rate set: writes must be known
		// 200×2 + 2000×0.20 + 400×2.50 + 10×16 = 1960.
		{edge.OpenAI, "gpt-5.6", edge.Usage{Input: k(200), CachedInput: k(2000), CacheWrite: k(400), Output: k(10)}, 1_960_000, true},
		// The override entry replaced the whole entry: no long-context rates,
		// no 1-hour rate. 300000×3 = 900000.
		{edge.Anthropic, "claude-sonnet-4-5", edge.Usage{Input: k(300000), CachedInput: k(0), CacheWrite: k(0), Output: k(0)}, 900_000_000, true},
	} {
		got, known := tab.Cost(format(tt.p), openai.Responses, tt.model, tt.u)
		if tt.p == edge.Anthropic {
			got, known = tab.Cost(format(tt.p), anthropic.Messages, tt.model, tt.u)
		}
		if got != tt.want || known != tt.known {
			t.Errorf("%s: Cost = %d, %v; want %d, %v", tt.model, got, known, tt.want, tt.known)
		}
	}
	base := mustLoad(t, "")
	if _, _, ok := base.Lookup(edge.OpenAI, "o1"); !ok {
		t.Error("the override changed the embedded table")
	}
	if v := mustLoad(t, `{"providers":{}}`).Version(); v != "2025-11-25+override" {
		t.Errorf("Version without override version = %q", v)
	}
}

func TestLoadFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "prices.json")
	if err := os.WriteFile(path, []byte(`{"version":"2026-02-01","providers":{"openai":{"my-finetune":{"input":"3","output":"12"}}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	tab, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, known := tab.Cost(openai.Format{}, openai.ChatCompletions, "my-finetune", edge.Usage{Input: k(1), Output: k(1)}); got != 15_000 || !known {
		t.Errorf("Cost = %d, %v", got, known)
	}
	if _, err := LoadFile(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Error("LoadFile of a missing file succeeded")
	}
}

func TestOverrideErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want []string // substrings of the error
	}{
		{"negative", `{"providers":{"openai":{"gpt-4o":{"input":"-1","output":"1"}}}}`, []string{`"gpt-4o"`, "input", "negative"}},
		{"number instead of string", `{"providers":{"openai":{"gpt-4o":{"input":"1","output":1.25}}}}`, []string{`"gpt-4o"`, "output", "decimal string"}},
		{"two dots", `{"providers":{"openai":{"m":{"input":"1.2.3"}}}}`, []string{`"m"`, "input", "malformed"}},
		{"exponent", `{"providers":{"openai":{"m":{"input":"1e3"}}}}`, []string{`"m"`, "input", "malformed"}},
		{"plus sign", `{"providers":{"openai":{"m":{"input":"+1"}}}}`, []string{`"m"`, "input", "malformed"}},
		{"empty", `{"providers":{"openai":{"m":{"input":""}}}}`, []string{`"m"`, "input", "empty"}},
		{"bare dot", `{"providers":{"openai":{"m":{"input":"1."}}}}`, []string{`"m"`, "input", "malformed"}},
		{"leading dot", `{"providers":{"openai":{"m":{"input":".5"}}}}`, []string{`"m"`, "input", "malformed"}},
		{"too many decimals", `{"providers":{"openai":{"m":{"input":"0.0000000001"}}}}`, []string{`"m"`, "input", "9 decimals"}},
		{"too large", `{"providers":{"openai":{"m":{"input":"10000000"}}}}`, []string{`"m"`, "input", "over"}},
		{"missing input", `{"providers":{"openai":{"m":{"output":"1"}}}}`, []string{`"m"`, "input", "missing"}},
		{"anthropic without cache_write", `{"providers":{"anthropic":{"c":{"input":"1","cached_input":"0.1","output":"5"}}}}`, []string{`"c"`, "cache_write", "missing"}},
		{"unknown field", `{"providers":{"openai":{"m":{"input":"1","cache_read":"0.1"}}}}`, []string{`"m"`, "cache_read"}},
		{"unknown provider", `{"providers":{"mistral":{"m":{"input":"1"}}}}`, []string{"mistral"}},
		{"bad version", `{"version":"Jan 5","providers":{}}`, []string{"version"}},
		{"long context mismatch", `{"providers":{"openai":{"m":{"input":"1","output":"2","long_context":{"above_input_tokens":10,"input":"2"}}}}}`, []string{`"m"`, "long_context", "output"}},
		{"long context threshold", `{"providers":{"openai":{"m":{"input":"1","long_context":{"above_input_tokens":0,"input":"2"}}}}}`, []string{`"m"`, "above_input_tokens"}},
		{"long context negative", `{"providers":{"openai":{"m":{"input":"1","long_context":{"above_input_tokens":5,"input":"-2"}}}}}`, []string{`"m"`, "long_context", "input", "negative"}},
		{"not json", `prices: {}`, []string{"invalid"}},
		{"trailing data", `{"providers":{}} {}`, []string{"after"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(strings.NewReader(tt.in), openai.Format{}, anthropic.Format{})
			if err == nil {
				t.Fatal("Load succeeded")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v is not ErrInvalid", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestParseUSD(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want int64
	}{
		{"0", 0},
		{"0.0", 0},
		{"10", 10_000_000_000},
		{"2.50", 2_500_000_000},
		{"0.075", 75_000_000},
		{"0.000000001", 1},
		{"1000000", 1_000_000_000_000_000},
		{"0999.5", 999_500_000_000},
	}
	for _, tt := range tests {
		got, err := ParseUSD(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseUSD(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "-0", "1,5", " 1", "1 ", "1e-3", "0x10", "1000000.000000001", "NaN", "Inf", "١"} {
		if got, err := ParseUSD(bad); err == nil {
			t.Errorf("ParseUSD(%q) = %d, want an error", bad, got)
		}
	}
}

func FuzzParseUSD(f *testing.F) {
	for _, s := range []string{"0", "2.50", "0.000000001", "-1", "1e3", "1000000", "99999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseUSD(s)
		if err != nil {
			return
		}
		if n < 0 || n > maxUSD*1_000_000_000 {
			t.Fatalf("ParseUSD(%q) = %d out of range", s, n)
		}
	})
}

func FuzzLoad(f *testing.F) {
	f.Add(string(embedded))
	f.Add(`{"version":"2026-01-05","providers":{"openai":{"m":{"input":"1","long_context":{"above_input_tokens":5,"input":"2"}}},"anthropic":{"x":null}}}`)
	f.Fuzz(func(t *testing.T, in string) {
		tab, err := Load(strings.NewReader(in))
		if err != nil {
			return
		}
		for _, p := range []edge.Provider{edge.OpenAI, edge.Anthropic} {
			for name, pr := range tab.models[p] {
				if !pr.Input.Set || pr.Input.NanoUSDPerMTok < 0 {
					t.Fatalf("%s %s: loaded without a valid input rate", p, name)
				}
				ep := openai.ChatCompletions
				if p == edge.Anthropic {
					ep = anthropic.Messages
				}
				tab.Cost(format(p), ep, name, edge.Usage{Input: k(1 << 40), CachedInput: k(7), CacheWrite: k(3), Output: k(1 << 40)})
			}
		}
	})
}

func BenchmarkCostResult(b *testing.B) {
	tab, err := Load(nil)
	if err != nil {
		b.Fatal(err)
	}
	r := usage.Result{Model: "claude-sonnet-4-5-20250929", ServiceTier: "standard", CacheWrite1h: k(1000),
		Usage: edge.Usage{Input: k(21), CachedInput: k(12000), CacheWrite: k(2051), Output: k(393)}}
	b.ReportAllocs()
	for b.Loop() {
		if _, known := tab.CostResult(anthropic.Format{}, anthropic.Messages, r); !known {
			b.Fatal("unknown")
		}
	}
}

// TestEmbeddedTableHasRequiredRates: the embedded table is decoded once,
// without formats; every model in it must still have the rates its
// provider's format requires.
func TestEmbeddedTableHasRequiredRates(t *testing.T) {
	tb, err := Load(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []RateRequirer{openai.Format{}, anthropic.Format{}} {
		if len(tb.models[f.Provider()]) == 0 {
			t.Fatalf("no %s models in the embedded table", f.Provider())
		}
		for name, pr := range tb.models[f.Provider()] {
			for _, r := range f.RequiredRates() {
				if !pr.Rates.byName(r).Set {
					t.Errorf("%s %s: %s missing", f.Provider(), name, r)
				}
			}
		}
	}
}
