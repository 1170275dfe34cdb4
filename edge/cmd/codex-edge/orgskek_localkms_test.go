//go:build localkms

package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/persiv/codex/edge/keyring/awskms/kmstest"
)

// TestOrgKEKCheckedBeforeRecordedLocalKMS: a KMS key the edge cannot use (here
// disabled) is refused by orgs create --kek and by orgs kek set before
// anything is recorded: no org is created, the org keeps its key, and the
// audit log has no change.
func TestOrgKEKCheckedBeforeRecordedLocalKMS(t *testing.T) {
	admin := kmstest.Local(t)
	good, bad := kmstest.CreateKey(t, admin), kmstest.CreateKey(t, admin)
	if _, err := admin.DisableKey(context.Background(), &kms.DisableKeyInput{KeyId: aws.String(bad)}); err != nil {
		t.Fatal(err)
	}
	c := newCLI(t)
	if code, _, errs := c.run("", "orgs", "create", "beta", "--kek", "awskms:"+bad); code == 0 || !strings.Contains(errs, "cannot be used by this edge") {
		t.Fatalf("orgs create on a disabled key: exit %d, %s", code, errs)
	}
	if out := c.ok("orgs", "list"); strings.Contains(out, "beta") {
		t.Fatalf("an org was created on a key the edge cannot use:\n%s", out)
	}
	c.ok("orgs", "create", "acme", "--kek", "awskms:"+good)
	if code, _, errs := c.run("", "orgs", "kek", "set", "--org", "acme", "awskms:"+bad); code == 0 || !strings.Contains(errs, "cannot be used by this edge") {
		t.Fatalf("orgs kek set onto a disabled key: exit %d, %s", code, errs)
	}
	if out := c.ok("crypto", "status", "--org", "acme"); !strings.Contains(out, good) || strings.Contains(out, bad) {
		t.Fatalf("after a refused kek set, crypto status:\n%s", out)
	}
	if out := c.ok("audit", "list", "--org", "acme", "--json"); strings.Contains(out, "crypto.kek_set") {
		t.Fatalf("a refused kek set was recorded:\n%s", out)
	}
	// A move onto a key the edge can use is made and recorded.
	c.ok("orgs", "create", "gamma")
	c.ok("orgs", "kek", "set", "--org", "gamma", "awskms:"+good)
	var moved bool
	for _, line := range strings.Split(strings.TrimSpace(c.ok("audit", "list", "--org", "gamma", "--json")), "\n") {
		var it struct {
			Action  string            `json:"action"`
			Via     string            `json:"via"`
			Details map[string]string `json:"details"`
		}
		if err := json.Unmarshal([]byte(line), &it); err != nil {
			t.Fatal(err)
		}
		if it.Action == "crypto.kek_set" {
			moved = it.Via == "cli" && it.Details["from"] == "default" && it.Details["to"] == "awskms:"+good
		}
	}
	if !moved {
		t.Fatal("the move onto the KMS key is not recorded as crypto.kek_set from default")
	}
}
