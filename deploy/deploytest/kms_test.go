package deploytest

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/persiv/codex/edge/keyring/awskms"
)

// kmsActions maps the edge's KMS calls on its own master key (awskms.API)
// to IAM actions. ScheduleKeyDeletion is made only on a customer's own
// per-org key (crypto shred --schedule-key-deletion), which the customer's
// key policy grants: the edge's role must never be able to delete the
// deployment's master key, so the module grants it nowhere.
func kmsActions() []string {
	t := reflect.TypeFor[awskms.API]()
	var out []string
	for i := range t.NumMethod() {
		switch m := t.Method(i).Name; m {
		case "ScheduleKeyDeletion":
		case "ReEncrypt":
			out = append(out, "kms:ReEncryptFrom", "kms:ReEncryptTo")
		default:
			out = append(out, "kms:"+m)
		}
	}
	return out
}

// The master key's policy and the task role's policy allow every KMS call
// the edge makes, or a rewrap (say) would fail in production only; and the
// key policy's encryption-context condition names the edge's context key.
func TestKMSPoliciesCoverTheEdgesCalls(t *testing.T) {
	var edge tfModule
	for _, m := range loadTerraform(t) {
		if m.dir == filepath.Join("terraform", "modules", "edge") {
			edge = m
		}
	}
	statements := func(doc string) map[string][]string {
		out := map[string][]string{}
		for _, blk := range edge.blocks("data", "aws_iam_policy_document") {
			if blk.Labels[1] != doc {
				continue
			}
			for _, st := range blk.Body.Blocks {
				if st.Type != "statement" {
					continue
				}
				sid, _ := literalString(st.Body.Attributes["sid"].Expr)
				out[sid] = stringsIn(st.Body.Attributes["actions"].Expr)
				for _, c := range st.Body.Blocks {
					if c.Type == "condition" {
						out[sid+"/condition"] = append(out[sid+"/condition"], stringsIn(c.Body.Attributes["values"].Expr)...)
					}
				}
			}
		}
		return out
	}
	key, task := statements("kek"), statements("task")
	if len(key) == 0 || len(task) == 0 {
		t.Fatal("no kek or task policy document in terraform/modules/edge")
	}
	keyActions := append(key["EdgeTaskUse"], key["EdgeTaskDescribe"]...)
	for _, a := range kmsActions() {
		if !slices.Contains(keyActions, a) {
			t.Errorf("the key policy does not let the task role call %s (edge/keyring/awskms uses it)", a)
		}
		if !slices.Contains(task["MasterKey"], a) {
			t.Errorf("the task role's policy lacks %s (edge/keyring/awskms uses it)", a)
		}
	}
	if !slices.Contains(key["EdgeTaskUse/condition"], awskms.ContextKey) {
		t.Errorf("the key policy's encryption-context condition does not name %q", awskms.ContextKey)
	}
	for _, a := range key["Administration"] {
		if slices.Contains([]string{"kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:ReEncryptFrom", "kms:ReEncryptTo"}, a) || strings.HasSuffix(a, "*") {
			t.Errorf("administrators may %s: only the task role may use the key", a)
		}
	}
}

// Cloud mode: the task role's policy on the customers' per-org keys
// (org_kms_key_arns) allows every KMS call the edge makes on an org's own
// key — ScheduleKeyDeletion included, for crypto shred
// --schedule-key-deletion — each use only under the encryption-context
// condition on org_id (an org's key is probed under an org's id too); and
// the README gives customers the key policy to add, naming the same.
func TestOrgKMSKeysPolicy(t *testing.T) {
	mods := map[string]tfModule{}
	for _, m := range loadTerraform(t) {
		mods[m.dir] = m
	}
	edge, plan := mods[filepath.Join("terraform", "modules", "edge")], mods[filepath.Join("terraform", "modules", "edge", "modules", "plan")]
	if len(edge.blocks("variable", "org_kms_key_arns")) == 0 || len(plan.blocks("variable", "org_kms_key_arns")) == 0 {
		t.Fatal("terraform/modules/edge (and its plan module): no variable org_kms_key_arns")
	}
	var grants []string
	for _, o := range plan.blocks("output", "org_key_grants") {
		grants = stringsIn(o.Body.Attributes["value"].Expr)
	}
	var doc *hclsyntax.Block
	for _, blk := range edge.blocks("data", "aws_iam_policy_document") {
		if blk.Labels[1] == "org_keys" {
			doc = blk
		}
	}
	if doc == nil {
		t.Fatal("terraform/modules/edge: no aws_iam_policy_document org_keys")
	}
	var use, other []string
	var conditions []string
	for _, st := range doc.Body.Blocks {
		switch {
		case st.Type == "dynamic" && st.Labels[0] == "statement":
			for _, c := range st.Body.Blocks {
				for _, cond := range c.Body.Blocks {
					if cond.Type == "condition" {
						v, _ := literalString(cond.Body.Attributes["variable"].Expr)
						conditions = append(conditions, v)
					}
				}
			}
			use = grants
		case st.Type == "statement":
			other = append(other, stringsIn(st.Body.Attributes["actions"].Expr)...)
			for _, c := range st.Body.Blocks {
				if c.Type == "condition" {
					t.Errorf("%s: a statement without encryption context has a condition", where(st))
				}
			}
		}
	}
	for _, a := range kmsActions() {
		if !slices.Contains(use, a) && !slices.Contains(other, a) {
			t.Errorf("the task role's policy on per-org keys lacks %s (edge/keyring/awskms uses it)", a)
		}
	}
	if !slices.Contains(other, "kms:ScheduleKeyDeletion") {
		t.Error("the task role's policy on per-org keys lacks kms:ScheduleKeyDeletion (crypto shred --schedule-key-deletion)")
	}
	for _, a := range other {
		if slices.Contains([]string{"kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:ReEncryptFrom", "kms:ReEncryptTo"}, a) {
			t.Errorf("per-org keys: %s is allowed without the encryption-context condition", a)
		}
	}
	if want := "kms:EncryptionContext:" + awskms.ContextKey; !slices.Equal(conditions, []string{want}) {
		t.Errorf("per-org key use conditions %q; want exactly %q", conditions, want)
	}
	readme, err := os.ReadFile(filepath.Join(repoRoot, "terraform", "modules", "edge", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"org_kms_key_arns", "kms:EncryptionContext:" + awskms.ContextKey, "kms:ReEncryptFrom", "kms:ScheduleKeyDeletion"} {
		if !strings.Contains(string(readme), want) {
			t.Errorf("terraform/modules/edge/README.md does not document the customer's key policy: no %q", want)
		}
	}
	// Both READMEs give customers the key policy to add: each names every
	// call the edge makes, as the role is granted it (kms:ReEncryptFrom and
	// kms:ReEncryptTo), never a wildcard the role's policy does not use.
	for _, f := range []string{"README.md", filepath.Join("terraform", "modules", "edge", "README.md")} {
		b, err := os.ReadFile(filepath.Join(repoRoot, f))
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range append(kmsActions(), "kms:ScheduleKeyDeletion") {
			if !strings.Contains(string(b), a) {
				t.Errorf("%s: the per-org key policy does not name %s", f, a)
			}
		}
		if strings.Contains(string(b), "ReEncrypt*") {
			t.Errorf("%s: names ReEncrypt*, where the role is granted kms:ReEncryptFrom and kms:ReEncryptTo", f)
		}
	}
}
