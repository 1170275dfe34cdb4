//go:build !race

// The race detector makes sync.Pool drop items at random, so allocation
// counts are only meaningful without it.

package fingerprint

import "testing"

func TestSumAllocs(t *testing.T) {
	f := New(secretA)
	body := chatBody(2 << 10)
	_, _, _ = f.Sum("openai", "chat.completions", body) // warm the pools
	// The one allocation is Info.Model.
	if n := testing.AllocsPerRun(200, func() { _, _, _ = f.Sum("openai", "chat.completions", body) }); n > 1 {
		t.Errorf("Sum allocates %v times per call, want at most 1", n)
	}
	extra := make([]byte, 32)
	if n := testing.AllocsPerRun(200, func() { _, _, _ = f.SumWith("openai", "chat.completions", extra, body) }); n > 1 {
		t.Errorf("SumWith allocates %v times per call, want at most 1", n)
	}
	noModel := []byte(`{"messages":[{"role":"user","content":"hi"}],"temperature":0.5}`)
	if n := testing.AllocsPerRun(200, func() { _, _, _ = f.Sum("openai", "chat.completions", noModel) }); n != 0 {
		t.Errorf("Sum without model allocates %v times per call", n)
	}
	// Rewritten spellings: exponents, and escapes that decode to a
	// control or non-ASCII character (Python's json.dumps escapes all
	// non-ASCII text).
	rewritten := []byte(`{"input":[2.5e-7,-3E+22,1e21],"text":"caf\u00e9 \ud83d\ude00 \u0001"}`)
	if _, err := Canonical(rewritten); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(200, func() { _, _, _ = f.Sum("openai", "embeddings", rewritten) }); n != 0 {
		t.Errorf("Sum of rewritten numbers and escapes allocates %v times per call", n)
	}
}
