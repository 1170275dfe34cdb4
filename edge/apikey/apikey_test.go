package apikey

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// knownKey is a key built by hand: its checksum is crc32.ChecksumIEEE of the
// random part in base62. It pins the format, so a change that would
// invalidate every issued key fails here.
const (
	knownRandom = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg"
	knownKey    = Prefix + knownRandom + "37cCQ0"
)

// checksumRef is an independent, slower encoding of the checksum.
func checksumRef(random string) string {
	v := crc32.ChecksumIEEE([]byte(random))
	digits := make([]byte, ChecksumLen)
	for i := range digits {
		digits[i] = '0'
	}
	for i := ChecksumLen - 1; v > 0; i-- {
		digits[i] = alphabet[v%62]
		v /= 62
	}
	return string(digits)
}

func TestKnownKey(t *testing.T) {
	t.Parallel()
	if got := Prefix + knownRandom + checksumRef(knownRandom); got != knownKey {
		t.Fatalf("reference checksum gives %s, test constant is %s", got, knownKey)
	}
	if _, err := Parse(knownKey); err != nil {
		t.Fatalf("Parse(known key) = %v", err)
	}
}

func TestGenerate(t *testing.T) {
	t.Parallel()
	seen := make(map[Secret]bool)
	for range 2000 {
		k, err := Generate()
		if err != nil {
			t.Fatal(err)
		}
		s := k.Reveal()
		if len(s) != Len || !strings.HasPrefix(s, Prefix) {
			t.Fatalf("generated key has wrong shape (len %d)", len(s))
		}
		random := s[len(Prefix) : len(Prefix)+RandomLen]
		if want := checksumRef(random); s[len(Prefix)+RandomLen:] != want {
			t.Fatalf("checksum %q, want %q", s[len(Prefix)+RandomLen:], want)
		}
		if _, err := Parse(s); err != nil {
			t.Fatalf("Parse(Generate()) = %v", err)
		}
		if seen[k] {
			t.Fatal("Generate returned the same key twice")
		}
		seen[k] = true
	}
}

// TestGenerateUniform checks that every base62 character occurs about as
// often as the others, which would fail with a plain b%62 (the first 8
// characters would be 25% more frequent) or a wrong alphabet.
func TestGenerateUniform(t *testing.T) {
	t.Parallel()
	var counts [62]int
	const keys = 5000
	for range keys {
		k, err := Generate()
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []byte(k.Reveal()[len(Prefix) : len(Prefix)+RandomLen]) {
			counts[base62Value[c]]++
		}
	}
	assertUniform(t, counts[:], keys*RandomLen)
}

func assertUniform(t *testing.T, counts []int, total int) {
	t.Helper()
	// Each count is Binomial(total, 1/62); allow 6 standard deviations.
	p := 1.0 / 62
	mean := float64(total) * p
	sd := sqrt(float64(total) * p * (1 - p))
	for i, c := range counts {
		if d := float64(c) - mean; d > 6*sd || d < -6*sd {
			t.Errorf("character %q occurs %d times, expected %.0f ± %.0f", alphabet[i], c, mean, 6*sd)
		}
	}
}

func sqrt(x float64) float64 {
	z := x
	for range 50 {
		z = (z + x/z) / 2
	}
	return z
}

func TestParse(t *testing.T) {
	t.Parallel()
	swap := []byte(knownKey)
	swap[10], swap[11] = swap[11], swap[10]
	typo := []byte(knownKey)
	typo[20] = 'x'
	badSum := []byte(knownKey)
	badSum[Len-1] = 'C'
	tests := []struct {
		name string
		in   string
		err  error
	}{
		{"valid", knownKey, nil},
		{"empty", "", ErrFormat},
		{"prefix only", Prefix, ErrFormat},
		{"test prefix", "pk_test_" + knownKey[len(Prefix):], ErrFormat},
		{"upper prefix", "PK_LIVE_" + knownKey[len(Prefix):], ErrFormat},
		{"one short", knownKey[:Len-1], ErrFormat},
		{"one long", knownKey + "0", ErrFormat},
		{"leading space", " " + knownKey[:Len-1], ErrFormat},
		{"trailing newline", knownKey[:Len-1] + "\n", ErrFormat},
		{"dash in random", knownKey[:20] + "-" + knownKey[21:], ErrFormat},
		{"underscore in checksum", knownKey[:Len-1] + "_", ErrFormat},
		{"non-ASCII", knownKey[:20] + "\xc3" + knownKey[21:], ErrFormat},
		{"NUL", knownKey[:20] + "\x00" + knownKey[21:], ErrFormat},
		{"typo", string(typo), ErrChecksum},
		{"swapped neighbours", string(swap), ErrChecksum},
		{"wrong checksum", string(badSum), ErrChecksum},
		{"checksum above 2^32", knownKey[:Len-ChecksumLen] + "zzzzzz", ErrChecksum},
		{"checksum of other key", knownKey[:Len-ChecksumLen] + "000000", ErrChecksum},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.in)
			if !errors.Is(err, tt.err) {
				t.Fatalf("Parse error = %v, want %v", err, tt.err)
			}
			if err == nil && got.Reveal() != tt.in {
				t.Fatal("Parse changed the key")
			}
			if err != nil {
				if got != "" {
					t.Fatal("Parse returned a key with an error")
				}
				if len(tt.in) > 8 && strings.Contains(err.Error(), tt.in[8:]) {
					t.Fatal("error text contains the input")
				}
			}
		})
	}
}

func TestParseAllocs(t *testing.T) {
	inputs := []string{knownKey, "", "garbage", knownKey[:Len-1] + "0", "pk_test_" + knownKey[8:]}
	for _, in := range inputs {
		if n := testing.AllocsPerRun(100, func() { _, _ = Parse(in) }); n != 0 {
			t.Errorf("Parse allocates %v times per call", n)
		}
	}
}

func TestRedaction(t *testing.T) {
	t.Parallel()
	k, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	secretPart := k.Reveal()[len(Prefix)+4:]
	want := DisplayPrefix(k) + "…"

	var logBuf bytes.Buffer
	slog.New(slog.NewJSONHandler(&logBuf, nil)).Info("x", "key", k)
	slog.New(slog.NewTextHandler(&logBuf, nil)).Info("x", slog.Any("key", k), slog.Any("any", k))
	j, err := json.Marshal(struct{ K Secret }{k})
	if err != nil {
		t.Fatal(err)
	}
	outputs := map[string]string{
		"String": k.String(),
		"%s":     fmt.Sprintf("%s", k),
		"%v":     fmt.Sprintf("%v", k),
		"%+v":    fmt.Sprintf("%+v", k),
		"%#v":    fmt.Sprintf("%#v", k),
		"%q":     fmt.Sprintf("%q", k),
		"%x":     fmt.Sprintf("%x", k),
		"%X":     fmt.Sprintf("%X", k),
		"%d":     fmt.Sprintf("%d", k),
		"%10.3s": fmt.Sprintf("%10.3s", k),
		"struct": fmt.Sprintf("%v %+v", struct{ K Secret }{k}, &struct{ K Secret }{k}),
		"slog":   logBuf.String(),
		"json":   string(j),
		"error":  fmt.Errorf("wrapped %v", k).Error(),
	}
	hexSecret := fmt.Sprintf("%x", secretPart)
	for name, out := range outputs {
		if strings.Contains(out, secretPart) || strings.Contains(strings.ToLower(out), hexSecret) {
			t.Errorf("%s leaks the key: %q", name, out)
		}
		if !strings.Contains(out, want) {
			t.Errorf("%s = %q, want it to contain %q", name, out, want)
		}
	}
	if k.Reveal() == k.String() {
		t.Fatal("Reveal is redacted")
	}
}

func TestRedactionMalformed(t *testing.T) {
	t.Parallel()
	// A Secret made by conversion from something that is not a gateway key
	// (say a provider key) must not print its leading characters.
	s := Secret("sk-proj-supersecretvalue")
	for _, out := range []string{s.String(), fmt.Sprint(s), fmt.Sprintf("%q", s), DisplayPrefix(s)} {
		if strings.Contains(out, "sk-proj") || strings.Contains(out, "secret") {
			t.Errorf("malformed secret leaks: %q", out)
		}
	}
}

func TestHash(t *testing.T) {
	for _, s := range []Secret{knownKey, "", "short", Secret(strings.Repeat("x", 200))} {
		if got, want := Hash(s), sha256.Sum256([]byte(s)); got != want {
			t.Errorf("Hash(%d bytes) = %x, want %x", len(s), got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { Hash(knownKey) }); n != 0 {
		t.Errorf("Hash allocates %v times", n)
	}
}

func TestDisplayPrefix(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   Secret
		want string
	}{
		{knownKey, "pk_live_0123"},
		{"", ""},
		{"pk_live_", ""},
		{Secret(knownKey[:Len-1]), ""},
	}
	for _, tt := range tests {
		if got := DisplayPrefix(tt.in); got != tt.want {
			t.Errorf("DisplayPrefix(len %d) = %q, want %q", len(tt.in), got, tt.want)
		}
	}
}

func TestNewID(t *testing.T) {
	t.Parallel()
	for _, prefix := range []string{"key_", "org_", "req_", "", strings.Repeat("p", 60)} {
		id := NewID(prefix)
		if len(id) != len(prefix)+IDLen || !strings.HasPrefix(id, prefix) {
			t.Fatalf("NewID(%q) = %q", prefix, id)
		}
		for _, c := range []byte(id[len(prefix):]) {
			if base62Value[c] == 0xff {
				t.Fatalf("NewID(%q) = %q: not base62", prefix, id)
			}
		}
	}
}

func TestNewTimeID(t *testing.T) {
	t.Parallel()
	base := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	times := []time.Time{
		time.Unix(0, 0), base, base.Add(time.Millisecond), base.Add(999 * time.Millisecond),
		base.Add(time.Second), base.Add(24 * time.Hour), base.AddDate(100, 0, 0),
	}
	prev := ""
	for _, at := range times {
		id := NewTimeID("req_", at)
		if len(id) != len("req_")+IDLen || !strings.HasPrefix(id, "req_") {
			t.Fatalf("NewTimeID = %q", id)
		}
		for _, c := range []byte(id[4:]) {
			if base62Value[c] == 0xff {
				t.Fatalf("NewTimeID = %q: not base62", id)
			}
		}
		if id <= prev {
			t.Fatalf("ids do not sort by time: %q (at %v) after %q", id, at, prev)
		}
		prev = id
	}
	// Within one millisecond the random part keeps ids apart.
	seen := map[string]bool{}
	for range 10000 {
		id := NewTimeID("req_", base)
		if seen[id] {
			t.Fatalf("duplicate id %s", id)
		}
		seen[id] = true
	}
}

func TestNewIDConcurrentUnique(t *testing.T) {
	t.Parallel()
	const workers, per = 8, 5000
	ids := make(chan string, workers*per)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range per {
				ids <- NewID("req_")
			}
		})
	}
	wg.Wait()
	close(ids)
	seen := make(map[string]bool, workers*per)
	var counts [62]int
	total := 0
	for id := range ids {
		if seen[id] {
			t.Fatalf("duplicate id %s", id)
		}
		seen[id] = true
		for _, c := range []byte(id[4:]) {
			counts[base62Value[c]]++
			total++
		}
	}
	assertUniform(t, counts[:], total)
}

func TestFromHeader(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		auth, xkey  string
		want        string
		wantPresent bool
	}{
		{"bearer", "Bearer " + knownKey, "", knownKey, true},
		{"bearer lower", "bearer " + knownKey, "", knownKey, true},
		{"bearer upper", "BEARER " + knownKey, "", knownKey, true},
		{"bearer extra spaces", "  Bearer \t " + knownKey + "  ", "", knownKey, true},
		{"x-api-key", "", knownKey, knownKey, true},
		{"x-api-key spaces", "", " " + knownKey + "\t", knownKey, true},
		{"both same", "Bearer " + knownKey, knownKey, knownKey, true},
		{"both different", "Bearer " + knownKey, "pk_live_other", "", false},
		{"basic ignored, x-api-key used", "Basic dXNlcjpwYXNz", knownKey, knownKey, true},
		{"basic alone", "Basic dXNlcjpwYXNz", "", "", false},
		{"bearer without token", "Bearer", "", "", false},
		{"bearer blank token", "Bearer   ", "", "", false},
		{"bearer blank, x-api-key used", "Bearer ", knownKey, knownKey, true},
		{"scheme glued to token", "Bearer" + knownKey, "", "", false},
		{"scheme prefix of another", "Bearerx " + knownKey, "", "", false},
		{"neither", "", "", "", false},
		{"blank x-api-key", "", "   ", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := FromHeader(tt.auth, tt.xkey)
			if got != tt.want || ok != tt.wantPresent {
				t.Fatalf("FromHeader = %q, %v; want %q, %v", got, ok, tt.want, tt.wantPresent)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add(knownKey)
	f.Add("")
	f.Add(Prefix)
	f.Add(knownKey[:Len-1] + "1")
	f.Add("pk_live_" + strings.Repeat("z", RandomLen+ChecksumLen))
	f.Add(strings.Repeat("\xff", Len))
	f.Fuzz(func(t *testing.T, s string) {
		k, err := Parse(s)
		if err != nil {
			// The sentinels themselves, so the text cannot carry the input.
			if err != ErrFormat && err != ErrChecksum {
				t.Fatalf("unexpected error: %v", err)
			}
			if k != "" {
				t.Fatal("key returned with error")
			}
			return
		}
		if k.Reveal() != s {
			t.Fatal("Parse changed the key")
		}
		// An accepted key re-validates by the independent reference.
		random := s[len(Prefix) : len(Prefix)+RandomLen]
		if len(s) != Len || !strings.HasPrefix(s, Prefix) || s[len(Prefix)+RandomLen:] != checksumRef(random) {
			t.Fatalf("Parse accepted an invalid key %q", s)
		}
		if _, err := Parse(k.Reveal()); err != nil {
			t.Fatal("accepted key does not re-parse")
		}
		if strings.Contains(k.String(), random[4:]) {
			t.Fatal("String leaks")
		}
		// Generated keys always parse.
		g, err := Generate()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Parse(g.Reveal()); err != nil {
			t.Fatalf("generated key rejected: %v", err)
		}
	})
}

func BenchmarkGenerate(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Generate(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	cases := map[string]string{
		"valid":    knownKey,
		"format":   "sk-ant-api03-" + strings.Repeat("a", 44),
		"checksum": knownKey[:Len-1] + "0",
	}
	for name, in := range cases {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = Parse(in)
			}
		})
	}
}

func BenchmarkHash(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		Hash(knownKey)
	}
}

// idSink keeps the compiler from discarding the ids built in benchmarks.
var idSink atomic.Int64

func BenchmarkNewID(b *testing.B) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		n := 0
		for pb.Next() {
			n += len(NewID("req_"))
		}
		idSink.Add(int64(n))
	})
}

// newIDUnbatched is the alternative NewID does not use: one crypto/rand
// call per id. BenchmarkNewIDUnbatched keeps the batching honest.
//
//go:noinline
func newIDUnbatched(prefix string) string {
	var raw [32]byte
	out := make([]byte, 0, len(prefix)+IDLen)
	out = append(out, prefix...)
	for n := 0; n < IDLen; {
		rand.Read(raw[:])
		for _, c := range raw {
			if c < maxUnbiased && n < IDLen {
				out = append(out, alphabet[c%62])
				n++
			}
		}
	}
	return string(out)
}

func BenchmarkNewIDUnbatched(b *testing.B) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		n := 0
		for pb.Next() {
			n += len(newIDUnbatched("req_"))
		}
		idSink.Add(int64(n))
	})
}

func BenchmarkFromHeader(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		FromHeader("Bearer "+knownKey, "")
	}
}
