package fingerprint_test

import (
	"fmt"

	"github.com/persiv/codex/edge/fingerprint"
)

func Example() {
	// One Fingerprinter per org, kept for the org's lifetime.
	f := fingerprint.New([]byte("a per-org secret of 32 bytes....."))

	a := []byte(`{"model":"gpt-4o","messages":[{"role":"user","content":"Hi"}],"temperature":1.0,"stream":true}`)
	b := []byte(`{ "temperature": 1, "messages": [ { "content": "Hi", "role": "user" } ], "model": "gpt-4o" }`)
	sa, info, err := f.Sum("openai", "chat.completions", a)
	if err != nil {
		panic(err)
	}
	sb, _, _ := f.Sum("openai", "chat.completions", b)
	fmt.Println(info.Model, info.Stream, sa == sb)

	c, _ := fingerprint.Canonical(a)
	fmt.Printf("%s\n", c)

	_, err = fingerprint.Scan([]byte(`{"model":"gpt-4o","model":"o3"}`))
	fmt.Println(err)
	// Output:
	// gpt-4o true true
	// {"messages":[{"content":"Hi","role":"user"}],"model":"gpt-4o","temperature":1}
	// invalid JSON request body: duplicate object key at byte 18
}
