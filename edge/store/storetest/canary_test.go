package storetest

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// recorder is a testing.TB that keeps failures instead of failing, so a test
// can check that a helper fails when it should.
type recorder struct {
	testing.TB
	failures []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.failures = append(r.failures, format)
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failures = append(r.failures, format)
}

const canary = "CANARY-7f3a9c1e-do-not-store"

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestScanDirForCanariesFails(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "clean.db"), bytes.Repeat([]byte{0, 1, 2, 'C', 'A'}, 1000))
	writeFile(t, filepath.Join(dir, "nested", "deep", "codex-edge.db-wal"),
		slices.Concat(bytes.Repeat([]byte{0xff}, 4096), []byte(canary), []byte{0, 0}))

	r := &recorder{TB: t}
	ScanDirForCanaries(r, dir, "some-other-canary", canary)
	if len(r.failures) != 1 {
		t.Fatalf("ScanDirForCanaries reported %d failures (%q), want 1", len(r.failures), r.failures)
	}

	r = &recorder{TB: t}
	ScanDirForCanaries(r, dir, "some-other-canary")
	if len(r.failures) != 0 {
		t.Errorf("ScanDirForCanaries without a planted canary failed: %q", r.failures)
	}

	r = &recorder{TB: t}
	ScanDirForCanaries(r, dir)
	if len(r.failures) == 0 {
		t.Errorf("ScanDirForCanaries with no canaries passed; a scan for nothing proves nothing")
	}
}

func TestFindCanaries(t *testing.T) {
	dir := t.TempDir()
	c := []byte(canary)
	b64 := func(prefix int) []byte {
		return []byte(base64.StdEncoding.EncodeToString(append(bytes.Repeat([]byte("x"), prefix), c...)))
	}
	files := map[string][]byte{
		"raw":          slices.Concat([]byte("head "), c, []byte(" tail")),
		"hex.json":     []byte(`{"v":"` + hex.EncodeToString(c) + `"}`),
		"HEX.txt":      []byte(strings.ToUpper(hex.EncodeToString(c))),
		"a/b64_0":      b64(0),
		"a/b64_1":      b64(1),
		"a/b64_2":      b64(2),
		"a/b64url":     []byte(base64.RawURLEncoding.EncodeToString(append([]byte("??>"), c...))),
		"clean":        []byte("CANARY-7f3a9c1e-do-not-stor"), // one byte short
		"x" + canary:   []byte("name only"),
		"twice/a.blob": slices.Concat(c, []byte("-"), c),
	}
	for name, data := range files {
		writeFile(t, filepath.Join(dir, name), data)
	}
	found, err := FindCanaries(dir, canary)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, f := range found {
		rel, _ := filepath.Rel(dir, f.Path)
		got[rel] = append(got[rel], f.Encoding)
	}
	want := map[string][]string{
		"raw":          {"raw"},
		"hex.json":     {"hex"},
		"HEX.txt":      {"HEX"},
		"a/b64_0":      {"base64"},
		"a/b64_1":      {"base64"},
		"a/b64_2":      {"base64"},
		"a/b64url":     {"base64url"},
		"x" + canary:   {"raw"},
		"twice/a.blob": {"raw", "raw"},
	}
	for name, w := range want {
		g := got[name]
		slices.Sort(g)
		// The URL and standard alphabets share most characters, so a base64
		// match may be reported under both; require the expected one.
		if !containsAll(g, w) {
			t.Errorf("%s: found %v, want %v", name, g, w)
		}
	}
	if g := got["clean"]; len(g) != 0 {
		t.Errorf("clean: found %v, want nothing", g)
	}

	if _, err := FindCanaries(dir, "short"); err == nil {
		t.Errorf("FindCanaries accepted a canary shorter than %d bytes", MinCanaryLen)
	}
	if _, err := FindCanaries(filepath.Join(dir, "missing"), canary); err == nil {
		t.Errorf("FindCanaries of a missing directory succeeded")
	}
}

func containsAll(got, want []string) bool {
	n := 0
	for _, w := range want {
		if i := slices.Index(got[n:], w); i >= 0 {
			n += i + 1
			continue
		}
		return false
	}
	return true
}

// FuzzBase64Forms checks that the base64 forms of a canary are found in the
// encoding of any text that contains it, wherever it falls.
func FuzzBase64Forms(f *testing.F) {
	f.Add([]byte("CANARY-0123456789"), []byte(""), []byte(""))
	f.Add([]byte("secret-prompt-text"), []byte("a"), []byte("bc"))
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7}, []byte("xy"), []byte("z"))
	f.Fuzz(func(t *testing.T, c, prefix, suffix []byte) {
		if len(c) < MinCanaryLen {
			return
		}
		forms := encodings(c)
		for name, enc := range map[string]*base64.Encoding{"base64": base64.StdEncoding, "base64url": base64.URLEncoding} {
			s := []byte(enc.EncodeToString(slices.Concat(prefix, c, suffix)))
			if !slices.ContainsFunc(forms[name], func(form []byte) bool { return bytes.Contains(s, form) }) {
				t.Errorf("%s of %q+canary+%q = %s: no form of %q found", name, prefix, suffix, s, c)
			}
		}
	})
}
