package deploytest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// The shell scripts of the deployment parse (bash -n / sh -n) and are
// executable; a syntax error would otherwise surface on a customer's host.
func TestShellScriptsParse(t *testing.T) {
	for _, s := range []struct{ shell, path string }{
		{"bash", "scripts/deploy-checks.sh"},
		{"bash", "deploy/compose/setup.sh"},
		{"sh", "deploy/compose/postgres-init.sh"},
	} {
		p := filepath.Join(repoRoot, s.path)
		fi, err := os.Stat(p)
		if err != nil {
			t.Errorf("%s: %v", s.path, err)
			continue
		}
		if fi.Mode()&0o111 == 0 {
			t.Errorf("%s is not executable", s.path)
		}
		if out, err := exec.Command(s.shell, "-n", p).CombinedOutput(); err != nil {
			t.Errorf("%s -n %s: %v\n%s", s.shell, s.path, err, out)
		}
	}
}
