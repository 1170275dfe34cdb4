package apikey_test

import (
	"errors"
	"fmt"

	"github.com/persiv/codex/edge/apikey"
)

func Example() {
	// Issuing a key: show it once, store only its hash and display prefix.
	key, err := apikey.Generate()
	if err != nil {
		panic(err)
	}
	hash, prefix := apikey.Hash(key), apikey.DisplayPrefix(key)
	_, _ = hash, prefix
	fmt.Println(len(key.Reveal()) == apikey.Len)

	// Authenticating a request: extract, check the format and checksum
	// (no lookup for a typo), then look the hash up.
	raw, ok := apikey.FromHeader("Bearer pk_live_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg37cCQ0", "")
	k, err := apikey.Parse(raw)
	fmt.Println(ok, err, k) // a Secret prints redacted

	_, err = apikey.Parse("pk_live_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefh37cCQ0")
	fmt.Println(errors.Is(err, apikey.ErrChecksum))
	// Output:
	// true
	// true <nil> pk_live_0123…
	// true
}
