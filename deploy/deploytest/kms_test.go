package deploytest

import (
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

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
