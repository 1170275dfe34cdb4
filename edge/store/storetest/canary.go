package storetest

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// MinCanaryLen is the shortest canary the scan accepts: a shorter one could
// turn up by chance in any binary file.
const MinCanaryLen = 8

// A Finding is one occurrence of a canary in a file.
type Finding struct {
	Path     string
	Offset   int64  // of the match in the file; -1 when in the file's name
	Canary   string // as given
	Encoding string // "raw", "hex", "HEX", "base64" or "base64url"
}

func (f Finding) String() string {
	if f.Offset < 0 {
		return fmt.Sprintf("%s: canary %q (%s) in the file name", f.Path, f.Canary, f.Encoding)
	}
	return fmt.Sprintf("%s: canary %q (%s) at offset %d", f.Path, f.Canary, f.Encoding, f.Offset)
}

// ScanDirForCanaries fails t if any canary appears under dir, in a file's
// contents or name, as is or hex- or base64-encoded. Tests plant canaries in
// prompts and secrets, then prove none reached the data directory in
// plaintext. Every file is read, including SQLite's -wal and -shm files.
func ScanDirForCanaries(t testing.TB, dir string, canaries ...string) {
	t.Helper()
	if len(canaries) == 0 {
		t.Fatalf("ScanDirForCanaries: no canaries given")
		return
	}
	found, err := FindCanaries(dir, canaries...)
	if err != nil {
		t.Fatalf("ScanDirForCanaries: %v", err)
		return
	}
	for _, f := range found {
		t.Errorf("plaintext canary found: %v", f)
	}
}

// FindCanaries returns every occurrence of the canaries in the files under
// dir. It does not follow symbolic links.
func FindCanaries(dir string, canaries ...string) ([]Finding, error) {
	type pattern struct {
		canary, encoding string
		b                []byte
	}
	var patterns []pattern
	for _, c := range canaries {
		if len(c) < MinCanaryLen {
			return nil, fmt.Errorf("canary %q is shorter than %d bytes", c, MinCanaryLen)
		}
		for enc, forms := range encodings([]byte(c)) {
			for _, b := range forms {
				patterns = append(patterns, pattern{c, enc, b})
			}
		}
	}
	var found []Finding
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		for _, p := range patterns {
			if path != dir && bytes.Contains([]byte(d.Name()), p.b) {
				found = append(found, Finding{Path: path, Offset: -1, Canary: p.canary, Encoding: p.encoding})
			}
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, p := range patterns {
			for off := 0; ; {
				i := bytes.Index(data[off:], p.b)
				if i < 0 {
					break
				}
				found = append(found, Finding{Path: path, Offset: int64(off + i), Canary: p.canary, Encoding: p.encoding})
				off += i + 1
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scan %s for canaries: %w", dir, err)
	}
	return found, nil
}

// encodings returns the byte strings that betray c, by encoding. Base64
// depends on where c falls within a 3-byte group, so each of the three
// alignments contributes the characters determined by c's bytes alone.
func encodings(c []byte) map[string][][]byte {
	h := hex.EncodeToString(c)
	out := map[string][][]byte{
		"raw": {c},
		"hex": {[]byte(h)},
		"HEX": {[]byte(strings.ToUpper(h))},
	}
	for name, enc := range map[string]*base64.Encoding{"base64": base64.StdEncoding, "base64url": base64.URLEncoding} {
		for k := range 3 {
			s := enc.EncodeToString(append(make([]byte, k), c...))
			// Character j covers bits [6j, 6j+6) of the input; keep those
			// wholly inside c's bits [8k, 8(k+len(c))).
			first := (8*k + 5) / 6
			last := (8*(k+len(c)))/6 - 1
			if last >= first {
				out[name] = append(out[name], []byte(s[first:last+1]))
			}
		}
	}
	return out
}

// FindRaw returns the canaries found under dir as they are (not hex or
// base64 encoded): for binary values such as ciphertexts, whose encodings
// are not what a store would write.
func FindRaw(t testing.TB, dir string, canaries ...string) map[string]bool {
	t.Helper()
	found, err := FindCanaries(dir, canaries...)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, f := range found {
		if f.Encoding == "raw" {
			out[f.Canary] = true
		}
	}
	return out
}
