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
	noModel := []byte(`{"messages":[{"role":"user","content":"hi"}],"temperature":0.5}`)
	if n := testing.AllocsPerRun(200, func() { _, _, _ = f.Sum("openai", "chat.completions", noModel) }); n != 0 {
		t.Errorf("Sum without model allocates %v times per call", n)
	}
}
