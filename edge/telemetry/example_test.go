package telemetry_test

import (
	"fmt"

	"github.com/persiv/codex/edge/telemetry"
)

// Org and key names, for customers who opt into names, are mapped onto
// the wire's label charset; anything else becomes '-'.
func ExampleLabel() {
	fmt.Println(telemetry.Label("Acme Corp (EU)"))
	// Output: Acme-Corp--EU-
}

// By default workspaces and keys travel as HMAC pseudonyms under a secret
// that never leaves the edge: stable, but not reversible.
func ExamplePseudonyms() {
	p := telemetry.Pseudonyms{Secret: []byte("per-edge secret, sealed in the data directory")}
	a, b := p.Workspace("org_123"), p.Workspace("org_123")
	fmt.Println(a == b, len(a))
	// Output: true 27
}
