package byok_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/persiv/codex/edge/keyring"
	"github.com/persiv/codex/edge/keyring/byok"
)

var (
	k1 = bytes.Repeat([]byte{0xa1}, 32)
	k2 = bytes.Repeat([]byte{0xb2}, 32)
	// encodings of k1 that must never show up in an error or log
	k1Forms = []string{hex.EncodeToString(k1), base64.StdEncoding.EncodeToString(k1), base64.RawURLEncoding.EncodeToString(k1)}
)

func noKeyIn(t *testing.T, s string) {
	t.Helper()
	for _, f := range k1Forms {
		if strings.Contains(s, f) || strings.Contains(s, f[:16]) {
			t.Errorf("%q contains key material", s)
		}
	}
}

func TestParseKey(t *testing.T) {
	tests := []struct {
		name, in string
		ok       bool
		errHas   string
	}{
		{"hex lower", hex.EncodeToString(k1), true, ""},
		{"hex upper", strings.ToUpper(hex.EncodeToString(k1)), true, ""},
		{"base64 std", base64.StdEncoding.EncodeToString(k1), true, ""},
		{"base64 url", base64.URLEncoding.EncodeToString(k1), true, ""},
		{"base64 raw std", base64.RawStdEncoding.EncodeToString(k1), true, ""},
		{"base64 raw url", base64.RawURLEncoding.EncodeToString(k1), true, ""},
		{"surrounding whitespace", " \t\n" + hex.EncodeToString(k1) + "\r\n", true, ""},
		{"empty", "  ", false, "empty"},
		{"short hex", hex.EncodeToString(k1[:16]), false, "32 digits, want 64"},
		{"long hex", hex.EncodeToString(k1) + "a1", false, "want 64"},
		{"short base64", base64.StdEncoding.EncodeToString(k1[:31]), false, "decodes to 31 bytes"},
		{"garbage", "not-a-key-at-all!" + hex.EncodeToString(k1), false, "neither hex nor canonical base64"},
		{"inner space", hex.EncodeToString(k1[:16]) + " " + hex.EncodeToString(k1[16:]), false, "whitespace inside"},
		// Issue 13, finding 9: one key, one spelling per encoding.
		{"base64 std padding bits", nonCanonical(base64.StdEncoding), false, "neither hex nor canonical base64"},
		{"base64 url padding bits", nonCanonical(base64.URLEncoding), false, "neither hex nor canonical base64"},
		{"base64 raw std padding bits", nonCanonical(base64.RawStdEncoding), false, "neither hex nor canonical base64"},
		{"base64 raw url padding bits", nonCanonical(base64.RawURLEncoding), false, "neither hex nor canonical base64"},
		{"base64 interior newline", split(base64.StdEncoding.EncodeToString(k1), "\n"), false, "whitespace inside"},
		{"base64 interior crlf", split(base64.StdEncoding.EncodeToString(k1), "\r\n"), false, "whitespace inside"},
		{"base64 raw interior newline", split(base64.RawURLEncoding.EncodeToString(k1), "\n"), false, "whitespace inside"},
		{"base64 interior tab", split(base64.StdEncoding.EncodeToString(k1), "\t"), false, "whitespace inside"},
		{"hex interior newline", split(hex.EncodeToString(k1), "\n"), false, "whitespace inside"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := byok.ParseKey(tt.in)
			if tt.ok {
				if err != nil || !bytes.Equal(got, k1) {
					t.Fatalf("ParseKey = %x, %v", got, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.errHas) {
				t.Fatalf("err = %v, want one containing %q", err, tt.errHas)
			}
			noKeyIn(t, err.Error())
		})
	}
}

// nonCanonical is k1 in enc with the unused low bits of its last data
// character set: a lenient decoder reads it as k1 all the same.
func nonCanonical(enc *base64.Encoding) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	s := enc.EncodeToString(k1)
	data := strings.TrimRight(s, "=")
	i := strings.IndexByte(alphabet, data[len(data)-1]) // a multiple of 4 below 60 for k1
	out := data[:len(data)-1] + string(alphabet[i|1]) + s[len(data):]
	if b, err := enc.DecodeString(out); err != nil || !bytes.Equal(b, k1) {
		panic("nonCanonical: not another spelling of k1") // the cases would test nothing
	}
	return out
}

// split puts sep in the middle of s.
func split(s, sep string) string { return s[:len(s)/2] + sep + s[len(s)/2:] }

// canonicalForms are the only spellings ParseKey may accept for key k,
// before surrounding whitespace.
func canonicalForms(k []byte) []string {
	return []string{
		hex.EncodeToString(k), strings.ToUpper(hex.EncodeToString(k)),
		base64.StdEncoding.EncodeToString(k), base64.URLEncoding.EncodeToString(k),
		base64.RawStdEncoding.EncodeToString(k), base64.RawURLEncoding.EncodeToString(k),
	}
}

func FuzzParseKey(f *testing.F) {
	for _, s := range append(k1Forms, "", "zz", hex.EncodeToString(k1[:31]),
		nonCanonical(base64.StdEncoding), nonCanonical(base64.RawURLEncoding), split(base64.StdEncoding.EncodeToString(k1), "\n")) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := byok.ParseKey(s)
		if err == nil && len(k) != 32 {
			t.Fatalf("accepted a %d-byte key", len(k))
		}
		if err == nil {
			in := strings.TrimSpace(s)
			ok := strings.EqualFold(in, hex.EncodeToString(k)) // hex of any case
			for _, c := range canonicalForms(k) {
				ok = ok || in == c
			}
			if !ok {
				t.Fatalf("accepted a non-canonical spelling of a key")
			}
		}
		if in := strings.TrimSpace(s); err != nil && len(in) >= 8 && strings.Contains(err.Error(), in) {
			t.Fatalf("error echoes the input: %v", err)
		}
	})
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestFromEnv(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "key")
	if err := os.WriteFile(file, []byte(base64.StdEncoding.EncodeToString(k1)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hk1, hk2 := hex.EncodeToString(k1), hex.EncodeToString(k2)
	tests := []struct {
		name     string
		env      map[string]string
		versions int
		errHas   string
	}{
		{"key", map[string]string{"CODEX_BYOK_KEY": hk1}, 1, ""},
		{"file", map[string]string{"CODEX_BYOK_KEY_FILE": file}, 1, ""},
		{"previous", map[string]string{"CODEX_BYOK_KEY": hk2, "CODEX_BYOK_PREVIOUS_KEYS": " " + hk1 + " , "}, 2, ""},
		{"none", map[string]string{}, 0, "CODEX_BYOK_KEY or CODEX_BYOK_KEY_FILE"},
		{"both", map[string]string{"CODEX_BYOK_KEY": hk1, "CODEX_BYOK_KEY_FILE": file}, 0, "not both"},
		{"bad key", map[string]string{"CODEX_BYOK_KEY": hk1[:62]}, 0, "CODEX_BYOK_KEY:"},
		{"missing file", map[string]string{"CODEX_BYOK_KEY_FILE": file + ".nope"}, 0, "CODEX_BYOK_KEY_FILE"},
		{"bad previous", map[string]string{"CODEX_BYOK_KEY": hk2, "CODEX_BYOK_PREVIOUS_KEYS": hk1 + ",xyz"}, 0, "CODEX_BYOK_PREVIOUS_KEYS entry 2"},
		{"duplicate", map[string]string{"CODEX_BYOK_KEY": hk1, "CODEX_BYOK_PREVIOUS_KEYS": hk1}, 0, "repeats"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := byok.FromEnv(env(tt.env))
			if tt.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errHas) {
					t.Fatalf("err = %v, want one containing %q", err, tt.errHas)
				}
				noKeyIn(t, err.Error())
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Versions()) != tt.versions {
				t.Fatalf("versions = %v", m.Versions())
			}
		})
	}
}

func TestFileWithBadKeyNamesFileNotKey(t *testing.T) {
	file := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(file, []byte(hex.EncodeToString(k1)[:60]), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := byok.FromEnv(env(map[string]string{"CODEX_BYOK_KEY_FILE": file}))
	if err == nil || !strings.Contains(err.Error(), file) {
		t.Fatalf("err = %v", err)
	}
	noKeyIn(t, err.Error())
}

func TestRoundTripAndRedaction(t *testing.T) {
	m, err := byok.New(k1)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	b := keyring.Binding{OrgID: "org_a", DEKID: keyring.DEKID{7}}
	dek, w, err := m.Generate(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := m.Unwrap(ctx, b, w); err != nil || !bytes.Equal(got, dek) {
		t.Fatalf("unwrap: %v", err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("configured", "master", m)
	out := buf.String() + fmt.Sprint(m) + fmt.Sprintf("%+v %#v", m, m.String())
	noKeyIn(t, out)
	if !strings.Contains(buf.String(), m.Versions()[0]) {
		t.Errorf("log lacks the version: %s", buf.String())
	}
}
