package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDoesNotImportControlPlane: the edge's tests run the control plane's
// packages, but the binary links none of them; what the edge can send is
// shared/wire and nothing else.
func TestDoesNotImportControlPlane(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list returned %d packages", len(deps))
	}
	wire := false
	for _, pkg := range deps {
		if strings.HasPrefix(pkg, "github.com/persiv/codex/controlplane") {
			t.Errorf("codex-edge depends on %s", pkg)
		}
		wire = wire || pkg == "github.com/persiv/codex/shared/wire"
	}
	if !wire {
		t.Error("codex-edge does not link shared/wire: the check looks at the wrong binary")
	}
}
