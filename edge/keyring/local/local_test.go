package local_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/persiv/codex/edge/keyring"
	"github.com/persiv/codex/edge/keyring/local"
)

func TestCreateThenReuse(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	m, warning, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(warning, "DEVELOPMENT ONLY") || !strings.Contains(warning, m.Path()) {
		t.Errorf("warning = %q", warning)
	}
	fi, err := os.Stat(m.Path())
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v", fi.Mode(), err)
	}
	ctx := context.Background()
	b := keyring.Binding{OrgID: "org_a", DEKID: keyring.DEKID{1}}
	dek, w, err := m.Generate(ctx, b)
	if err != nil || w.Ref != local.Ref {
		t.Fatalf("generate: %+v, %v", w, err)
	}
	again, _, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := again.Unwrap(ctx, b, w); err != nil || !bytes.Equal(got, dek) {
		t.Fatalf("reopened key does not unwrap: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("data dir holds %d files, want only the key", len(entries))
	}
}

func TestConcurrentFirstUse(t *testing.T) {
	dir := t.TempDir()
	var wg sync.WaitGroup
	versions := make([]string, 8)
	for i := range versions {
		wg.Go(func() {
			m, _, err := local.Open(dir)
			if err != nil {
				t.Error(err)
				return
			}
			versions[i] = m.Versions()[0]
		})
	}
	wg.Wait()
	for _, v := range versions {
		if v != versions[0] {
			t.Fatalf("concurrent opens created different keys: %v", versions)
		}
	}
}

func TestRefusesBadFiles(t *testing.T) {
	tests := []struct {
		name    string
		content string
		mode    os.FileMode
		errHas  string
	}{
		{"world readable", "", 0o644, "chmod 600"},
		{"not base64", "hello", 0o600, "not a base64 256-bit key"},
		{"short key", "AAAA", 0o600, "not a base64 256-bit key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.content == "" {
				if _, _, err := local.Open(dir); err != nil {
					t.Fatal(err)
				}
			} else if err := os.WriteFile(filepath.Join(dir, local.FileName), []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(filepath.Join(dir, local.FileName), tt.mode); err != nil {
				t.Fatal(err)
			}
			if _, _, err := local.Open(dir); err == nil || !strings.Contains(err.Error(), tt.errHas) {
				t.Fatalf("err = %v, want one containing %q", err, tt.errHas)
			}
		})
	}
	if _, _, err := local.Open(""); err == nil {
		t.Error("empty data dir accepted")
	}
}
