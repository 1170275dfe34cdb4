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

// TestComposeSetupKeepsSecretsPrivate runs deploy/compose/setup.sh in a
// copy of the directory, with a stand-in docker that prints an operator
// configuration: the keys it makes are out of reach of the host's other
// users (the secrets directory is the owner's alone, .env is 0600), and a
// second run keeps the keys it made.
func TestComposeSetupKeepsSecretsPrivate(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatalf("setup.sh needs openssl: %v", err)
	}
	dir := t.TempDir()
	src, err := os.ReadFile(filepath.Join(repoRoot, "deploy/compose/setup.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "setup.sh"), src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "nats"), 0o755); err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "docker"), []byte("#!/bin/sh\necho '# operator'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	run := func() {
		t.Helper()
		cmd := exec.Command("bash", filepath.Join(dir, "setup.sh"))
		cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("setup.sh: %v\n%s", err, out)
		}
	}
	run()
	keys := []string{"secrets/byok.key", "secrets/admin.token", "secrets/controlplane-secrets.kek", "secrets/ca.key", "secrets/tls/key.pem", ".env"}
	first := map[string][]byte{}
	for _, k := range keys {
		b, err := os.ReadFile(filepath.Join(dir, k))
		if err != nil || len(b) == 0 {
			t.Fatalf("setup.sh made no %s: %v", k, err)
		}
		first[k] = b
	}
	mode := func(p string) os.FileMode {
		t.Helper()
		fi, err := os.Stat(filepath.Join(dir, p))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Mode().Perm()
	}
	if m := mode("secrets"); m&0o077 != 0 {
		t.Errorf("secrets/ is %v: the host's other users reach the keys in it", m)
	}
	if m := mode(".env"); m&0o077 != 0 {
		t.Errorf(".env is %v: the host's other users read its passwords", m)
	}
	run()
	for _, k := range keys {
		if b, err := os.ReadFile(filepath.Join(dir, k)); err != nil || string(b) != string(first[k]) {
			t.Errorf("a second run changed %s (%v)", k, err)
		}
	}
}
