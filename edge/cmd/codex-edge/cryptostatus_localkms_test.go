//go:build localkms

package main

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"go.uber.org/goleak"

	"github.com/persiv/codex/edge/keyring/awskms/kmstest"
)

// TestMain fails the package's tests when a goroutine outlives them (as
// leak_test.go does without the localkms tag), except the AWS SDK's idle
// keep-alive connections to KMS: each CLI command opens its own KMS
// clients and, as a process would at exit, leaves them open.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("github.com/hashicorp/golang-lru/v2/expirable.NewLRU[...].func1"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
	)
}

// TestCLIOrgKEKLocalKMS runs the CLI against real (local) KMS keys: an org
// created on one key is moved to another by orgs kek set, which re-wraps
// its data keys with progress; crypto status then names the new key and
// says an earlier backup still opens; disabling a key makes status say no
// backup opens (and enabling it, that one does again); crypto shred
// --schedule-key-deletion makes status say no backup opens for the
// shredded org, while an org on the shared default key says it does.
func TestCLIOrgKEKLocalKMS(t *testing.T) {
	admin := kmstest.Local(t)
	ctx := context.Background()
	arn1, arn2, arn3 := kmstest.CreateKey(t, admin), kmstest.CreateKey(t, admin), kmstest.CreateKey(t, admin)

	c := newCLI(t)
	c.ok("orgs", "create", "acme", "--kek", "awskms:"+arn1)
	c.ok("orgs", "create", "beta", "--kek", "awskms:"+arn3)
	c.ok("orgs", "create", "shared")
	for _, org := range []string{"acme", "beta", "shared"} {
		if code, _, errs := c.run("sk-key-of-"+org, "providers", "set", "--org", org, "openai", "--api-key-stdin"); code != 0 {
			t.Fatalf("providers set --org %s: %s", org, errs)
		}
	}
	c.ok("crypto", "rotate", "--org", "acme")

	out := c.ok("orgs", "kek", "set", "--org", "acme", "awskms:"+arn2)
	for _, s := range []string{"[1/2] generation", "[2/2] generation", "rewrapped awskms:" + arn1 + " -> awskms:" + arn2, "2 data keys: 2 rewrapped, 0 already under it, 0 failed"} {
		if !strings.Contains(out, s) {
			t.Fatalf("orgs kek set lacks %q:\n%s", s, out)
		}
	}

	type want struct {
		masterKey  string
		generation float64
		openable   any
		backup     string
	}
	check := func(t *testing.T, wants map[string]want) {
		t.Helper()
		got, _ := c.statusByName(t)
		for name, w := range wants {
			m := got[name]
			if m["master_key"] != w.masterKey || m["generation"] != w.generation || m["backup_openable"] != w.openable ||
				m["backup"] != w.backup || m["waiting_for_key"] != false {
				t.Errorf("org %s: %v\nwant %+v", name, m, w)
			}
			if w.masterKey == "awskms:"+arn2 {
				dks, _ := m["data_keys"].([]any)
				for _, d := range dks {
					if v := d.(map[string]any)["master_version"]; v != arn2 {
						t.Errorf("org %s: a data key still under %v", name, v)
					}
				}
			}
		}
	}
	acme := want{"awskms:" + arn2, 2, true, "own key: usable"}
	beta := want{"awskms:" + arn3, 1, true, "own key: usable"}
	shared := want{"default", 1, true, "shared"}
	check(t, map[string]want{"acme": acme, "beta": beta, "shared": shared})

	// A disabled key: no backup of the org opens while it stays so.
	if _, err := admin.DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(arn3)}); err != nil {
		t.Fatal(err)
	}
	check(t, map[string]want{"acme": acme, "beta": {"awskms:" + arn3, 1, false, "own key: refused"}, "shared": shared})
	if _, err := admin.EnableKey(ctx, &kms.EnableKeyInput{KeyId: aws.String(arn3)}); err != nil {
		t.Fatal(err)
	}
	check(t, map[string]want{"acme": acme, "beta": beta, "shared": shared})

	out = c.ok("crypto", "shred", "--org", "acme", "--yes", "--schedule-key-deletion", "7")
	if !strings.Contains(out, "scheduled for deletion") || !strings.Contains(out, "2 data keys destroyed") {
		t.Fatalf("crypto shred --schedule-key-deletion: %q", out)
	}
	k, err := admin.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(arn2)})
	if err != nil || k.KeyMetadata.KeyState != "PendingDeletion" {
		t.Fatalf("key after the shred: %v, %v", k, err)
	}
	check(t, map[string]want{"acme": {"awskms:" + arn2, 0, false, "own key: refused"}, "beta": beta, "shared": shared})
	human := c.ok("crypto", "status", "--org", "acme")
	if !strings.Contains(human, "backup openable:  no (own key: refused)") || !strings.Contains(human, "no data keys") {
		t.Fatalf("crypto status --org acme (human):\n%s", human)
	}
	t.Log(human)
}
