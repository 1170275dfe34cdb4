package keyring_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"

	"github.com/persiv/codex/edge/keyring"
	"github.com/persiv/codex/edge/keyring/kek"
)

// The wiring codex-edge does at start-up, then a seal and open on the
// request path and a shred.
func Example() {
	ctx := context.Background()
	dataDir, err := os.MkdirTemp("", "codex-example")
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = os.RemoveAll(dataDir) }()

	getenv := func(k string) string {
		return map[string]string{
			"CODEX_KEK":      "byok",
			"CODEX_BYOK_KEY": "0000000000000000000000000000000000000000000000000000000000000000",
		}[k]
	}
	master, warning, err := kek.FromEnv(ctx, getenv, dataDir) // os.Getenv in production
	if err != nil {
		log.Fatal(err) // a malformed CODEX_KEK or key stops start-up
	}
	if warning != "" {
		log.Print(warning) // CODEX_KEK=local
	}
	ring, err := keyring.New(keyring.Options{Store: keyring.NewMemStore(), Master: master})
	if err != nil {
		log.Fatal(err)
	}
	// For the life of the process: with CODEX_KEK=awskms:<key>, a key
	// disabled out of band stops working here within ProbeInterval (a
	// byok key cannot be probed; Watch returns at once).
	watch, stop := context.WithCancel(ctx)
	defer stop()
	go ring.Watch(watch)

	ct, err := ring.Seal(ctx, "org_1", keyring.PurposeCredential, "provider:openai", []byte("sk-..."))
	if err != nil {
		log.Fatal(err)
	}
	pt, err := ring.Open(ctx, "org_1", keyring.PurposeCredential, "provider:openai", ct)
	fmt.Printf("%s %v\n", pt, err)

	if _, err := ring.Shred(ctx, "org_1"); err != nil {
		log.Fatal(err)
	}
	_, err = ring.Open(ctx, "org_1", keyring.PurposeCredential, "provider:openai", ct)
	fmt.Println(errors.Is(err, keyring.ErrUnreadable)) // treat as absent: the credential must be set again
	// Output:
	// sk-... <nil>
	// true
}
