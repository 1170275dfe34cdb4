package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDoesNotImportEdge: the control plane has no code path that could
// handle content; the edge's packages, which do, are not linked in.
func TestDoesNotImportEdge(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list returned %d packages", len(deps))
	}
	for _, pkg := range deps {
		if strings.HasPrefix(pkg, "github.com/persiv/codex/edge") {
			t.Errorf("codex-controlplane depends on %s", pkg)
		}
	}
}
