package config

import (
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCacheSettings(t *testing.T) {
	t.Parallel()
	c, err := Load("", env(map[string]string{
		"CODEX_CACHE_ENABLED": "true", "CODEX_CACHE_TTL": "10m", "CODEX_CACHE_MAX_ENTRY_BYTES": "1024",
		"CODEX_CACHE_BUDGET_BYTES": "1048576", "CODEX_CACHE_OVERRIDES": "org_a=off; key_b=on,ttl=30s",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if !c.CacheEnabled || c.CacheTTL != 10*time.Minute || c.CacheMaxEntryBytes != 1024 || c.CacheBudgetBytes != 1<<20 {
		t.Fatalf("got %+v", c)
	}
	for _, bad := range []map[string]string{
		{"CODEX_CACHE_TTL": "0s"},
		{"CODEX_CACHE_TTL": "2h", "CODEX_CACHE_MAX_TTL": "1h"},
		{"CODEX_CACHE_MAX_ENTRY_BYTES": "0"},
		{"CODEX_CACHE_OVERRIDES": "org_a=maybe"},
	} {
		if _, err := Load("", env(bad)); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

// TestCacheOverridesLoad: the overrides are parsed as the configuration
// loads, from the file or the environment, into the map serve uses.
func TestCacheOverridesLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "edge.yaml")
	if err := os.WriteFile(path, []byte("cache_overrides: \"org_a=off; key_b=on,ttl=30s\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	want := CacheOverrides{"org_a": {}, "key_b": {Enabled: true, TTL: 30 * time.Second}}
	for _, tc := range []struct {
		name, path string
		env        map[string]string
		want       CacheOverrides
	}{
		{"default", "", nil, nil},
		{"file", path, nil, want},
		{"environment", "", map[string]string{"CODEX_CACHE_OVERRIDES": "org_a=off; key_b=on,ttl=30s"}, want},
		{"environment over file", path, map[string]string{"CODEX_CACHE_OVERRIDES": "org_c=off"}, CacheOverrides{"org_c": {}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(tc.path, env(tc.env))
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(c.CacheOverrides, tc.want) {
				t.Fatalf("got %v, want %v", c.CacheOverrides, tc.want)
			}
		})
	}
}

func TestCacheOverridesFor(t *testing.T) {
	o := CacheOverrides{"org_a": {}, "key_b": {Enabled: true, TTL: time.Minute}}
	for _, tc := range []struct {
		org, key string
		want     CacheOverride
		ok       bool
	}{
		{"org_a", "key_x", CacheOverride{}, true},
		{"org_a", "key_b", CacheOverride{Enabled: true, TTL: time.Minute}, true}, // the key's wins
		{"org_y", "key_b", CacheOverride{Enabled: true, TTL: time.Minute}, true},
		{"org_y", "key_x", CacheOverride{}, false},
	} {
		if got, ok := o.For(tc.org, tc.key); got != tc.want || ok != tc.ok {
			t.Errorf("For(%s, %s) = %+v, %v; want %+v, %v", tc.org, tc.key, got, ok, tc.want, tc.ok)
		}
	}
}

func TestCacheOverridesText(t *testing.T) {
	o := CacheOverrides{"org_a": {}, "key_b": {Enabled: true, TTL: 90 * time.Second}, "key_c": {Enabled: true}}
	b, err := o.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	if want := "key_b=on,ttl=1m30s; key_c=on; org_a=off"; string(b) != want {
		t.Fatalf("MarshalText = %q, want %q", b, want)
	}
	back, err := ParseCacheOverrides(string(b))
	if err != nil || !maps.Equal(back, o) {
		t.Fatalf("parsed back to %v, %v", back, err)
	}
}

func TestParseCacheOverrides(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in   string
		want map[string]CacheOverride
		err  string
	}{
		{"", map[string]CacheOverride{}, ""},
		{"org_a=off", map[string]CacheOverride{"org_a": {}}, ""},
		{" org_a = off ; key_b=on,ttl=30s;", map[string]CacheOverride{"org_a": {}, "key_b": {Enabled: true, TTL: 30 * time.Second}}, ""},
		{"key_c=ttl=5m", map[string]CacheOverride{"key_c": {Enabled: true, TTL: 5 * time.Minute}}, ""},
		{"org_a", nil, "not id=setting"},
		{"=off", nil, "not id=setting"},
		{"org_a=ttl=-1s", nil, "positive duration"},
		{"org_a=sometimes", nil, "not on, off"},
	}
	for _, c := range cases {
		got, err := ParseCacheOverrides(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: error %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || len(got) != len(c.want) {
			t.Errorf("%q: %v %v", c.in, got, err)
			continue
		}
		for k, v := range c.want {
			if got[k] != v {
				t.Errorf("%q: %s = %+v, want %+v", c.in, k, got[k], v)
			}
		}
	}
}

func FuzzParseCacheOverrides(f *testing.F) {
	f.Add("org_a=off; key_b=on,ttl=30s")
	f.Add("x=ttl=1h,off;;")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseCacheOverrides(s)
		if err != nil {
			return
		}
		for id, o := range got {
			if id == "" || strings.ContainsAny(id, ";") || o.TTL < 0 {
				t.Fatalf("%q parsed to %q: %+v", s, id, o)
			}
		}
	})
}
