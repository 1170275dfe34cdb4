package ratelimit

import (
	"testing"

	"github.com/persiv/codex/edge"
)

func TestSetApplying(t *testing.T) {
	t.Parallel()
	org := edge.Limit{OrgID: "org_a", RPM: 60}
	own := edge.Limit{OrgID: "org_a", KeyID: "key_1", TPM: 1000}
	other := edge.Limit{OrgID: "org_a", KeyID: "key_2", RPM: 5, TPM: 7}
	for _, tc := range []struct {
		name   string
		limits []edge.Limit
		key    string
		want   []string // counter names of the rules, in order
	}{
		{"none", nil, "key_1", nil},
		{"org only", []edge.Limit{org, other}, "key_1", []string{"{org_a}:org:rpm"}},
		{"org then key", []edge.Limit{own, org, other}, "key_1", []string{"{org_a}:org:rpm", "{org_a}:key:key_1:rpm"}},
		{"key only", []edge.Limit{own, other}, "key_2", []string{"{org_a}:key:key_2:rpm"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs, n := NewSet(tc.limits).applying(tc.key)
			if n != len(tc.want) {
				t.Fatalf("%d rules apply, want %d", n, len(tc.want))
			}
			for i, r := range rs[:n] {
				if r.rpmKey != tc.want[i] {
					t.Errorf("rule %d counts in %q, want %q", i, r.rpmKey, tc.want[i])
				}
			}
		})
	}
	r := NewSet([]edge.Limit{other}).keys["key_2"]
	if r.tpmKey != "{org_a}:key:key_2:tpm" || r.rpmHdr[0] != "5" || r.tpmHdr[0] != "7" {
		t.Fatalf("rule = %+v", r)
	}
}
