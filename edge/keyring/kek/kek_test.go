package kek_test

import (
	"context"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/persiv/codex/edge/keyring"
	"github.com/persiv/codex/edge/keyring/awskms"
	"github.com/persiv/codex/edge/keyring/byok"
	"github.com/persiv/codex/edge/keyring/kek"
	"github.com/persiv/codex/edge/keyring/local"
)

func TestParse(t *testing.T) {
	arn := "arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	tests := []struct {
		in     string
		want   kek.Spec
		errHas string
	}{
		{"", kek.Spec{Kind: kek.Local}, ""},
		{"local", kek.Spec{Kind: kek.Local}, ""},
		{" LOCAL\n", kek.Spec{Kind: kek.Local}, ""},
		{"byok", kek.Spec{Kind: kek.BYOK}, ""},
		{"awskms:" + arn, kek.Spec{Kind: kek.AWSKMS, KeyID: arn}, ""},
		{"awskms:alias/codex", kek.Spec{Kind: kek.AWSKMS, KeyID: "alias/codex"}, ""},
		{"awskms:1234abcd-12ab-34cd-56ef-1234567890ab", kek.Spec{Kind: kek.AWSKMS, KeyID: "1234abcd-12ab-34cd-56ef-1234567890ab"}, ""},
		{"awskms", kek.Spec{}, "empty key id"},
		{"awskms:", kek.Spec{}, "empty key id"},
		{"awskms:a b", kek.Spec{}, "whitespace"},
		{"awskms:arn:aws:s3:::bucket", kek.Spec{}, "not a KMS"},
		{"byok:abc", kek.Spec{}, "no argument"},
		{"local:x", kek.Spec{}, "no argument"},
		{"vault", kek.Spec{}, "not local, byok or awskms"},
	}
	for _, tt := range tests {
		got, err := kek.Parse(tt.in)
		if tt.errHas != "" {
			if err == nil || !strings.Contains(err.Error(), tt.errHas) || !strings.Contains(err.Error(), "CODEX_KEK") {
				t.Errorf("Parse(%q) err = %v, want one naming CODEX_KEK and containing %q", tt.in, err, tt.errHas)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			continue
		}
		if again, err := kek.Parse(got.String()); err != nil || again != got {
			t.Errorf("Parse(%q.String()) = %+v, %v", tt.in, again, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"", "local", "byok", "awskms:alias/x", "awskms:arn:aws:kms:eu-west-2:1:key/x", "x:y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		spec, err := kek.Parse(s)
		if err != nil {
			return
		}
		if again, err := kek.Parse(spec.String()); err != nil || again != spec {
			t.Fatalf("Parse(%q) = %+v, but its String does not parse back: %+v, %v", s, spec, again, err)
		}
	})
}

func TestFromEnv(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	key := hex.EncodeToString(make([]byte, 32))
	vars := map[string]string{}
	getenv := func(k string) string { return vars[k] }

	m, warning, err := kek.FromEnv(ctx, getenv, dir)
	if err != nil || m.Ref() != local.Ref || warning == "" {
		t.Fatalf("default: %v, %q, %v", m, warning, err)
	}

	vars["CODEX_KEK"] = "byok"
	if _, _, err := kek.FromEnv(ctx, getenv, dir); err == nil {
		t.Fatal("byok without a key accepted")
	}
	vars["CODEX_BYOK_KEY"] = key
	m, warning, err = kek.FromEnv(ctx, getenv, dir)
	if err != nil || m.Ref() != byok.Ref || warning != "" {
		t.Fatalf("byok: %v, %q, %v", m, warning, err)
	}

	// awskms builds its client without calling KMS, so a key that is
	// unusable now does not stop start-up.
	t.Setenv("AWS_REGION", "eu-west-2")
	t.Setenv("AWS_ENDPOINT_URL_KMS", "http://127.0.0.1:1")
	vars["CODEX_KEK"] = "awskms:alias/codex-test"
	m, warning, err = kek.FromEnv(ctx, getenv, dir)
	if err != nil || m.Ref() != awskms.Ref || warning != "" {
		t.Fatalf("awskms: %v, %q, %v", m, warning, err)
	}
}

func TestParseOrg(t *testing.T) {
	const arn = "arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	for _, c := range []struct {
		in, want string
		ok       bool
	}{
		{"awskms:" + arn, "awskms:" + arn, true},
		{" AWSKMS:" + arn + " ", "awskms:" + arn, true},
		{"default", "", true},
		{"", "", true},
		{"local", "", false}, // the edge's own key is not an org's own
		{"byok", "", false},
		{"awskms:", "", false},
		{"gcpkms:x", "", false},
	} {
		got, err := kek.ParseOrg(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("ParseOrg(%q) = %q, %v; want %q, ok=%v", c.in, got, err, c.want, c.ok)
		}
	}
}

// OrgKeys shares one master key per distinct reference, returns nil for
// orgs on the default key, Unavailable for a reference it could not open,
// and reports the orgs whose reference changed on each Load.
func TestOrgKeys(t *testing.T) {
	refs := map[string]string{"org_a": "awskms:k1", "org_b": "awskms:k1", "org_c": "awskms:bad"}
	opened := 0
	o := kek.NewOrgKeys(func(context.Context) (map[string]string, error) {
		m := map[string]string{}
		for k, v := range refs {
			m[k] = v
		}
		return m, nil
	}, func(_ context.Context, ref string) (keyring.MasterKey, error) {
		if ref == "awskms:bad" {
			return nil, errors.New("cannot open")
		}
		opened++
		return keyring.Unavailable("stub:" + ref), nil
	})
	ctx := context.Background()
	changed, err := o.Load(ctx)
	if err != nil || len(changed) != 3 {
		t.Fatalf("first Load = %v, %v; want 3 orgs changed", changed, err)
	}
	if opened != 1 {
		t.Errorf("opened %d master keys for one distinct reference", opened)
	}
	if a, b := o.Master("org_a"), o.Master("org_b"); a == nil || a != b || a.Ref() != "stub:awskms:k1" {
		t.Errorf("org_a and org_b share %v and %v, want one key", a, b)
	}
	if m := o.Master("org_c"); m == nil || m.Ref() != "awskms:bad" {
		t.Errorf("org_c with an unopenable key: %v, want Unavailable", m)
	}
	if m := o.Master("org_d"); m != nil {
		t.Errorf("org_d without own key: %v, want nil (default)", m)
	}
	delete(refs, "org_b")
	refs["org_a"] = "awskms:k2"
	changed, err = o.Load(ctx)
	if err != nil || len(changed) != 2 {
		t.Fatalf("second Load = %v, %v; want org_a and org_b", changed, err)
	}
	if m := o.Master("org_b"); m != nil {
		t.Errorf("org_b back on the default key: %v", m)
	}
	if d := o.Distinct(); len(d) != 2 {
		t.Errorf("Distinct = %v, want 2 references", d)
	}
}
