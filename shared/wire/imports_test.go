package wire

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportsNeitherBinary: whatever shared can express can leave a
// customer's network, so it depends on neither the edge nor the control
// plane.
func TestImportsNeitherBinary(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", "../...").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if strings.HasPrefix(pkg, "github.com/persiv/codex/edge") || strings.HasPrefix(pkg, "github.com/persiv/codex/controlplane") {
			t.Errorf("shared depends on %s", pkg)
		}
	}
}
