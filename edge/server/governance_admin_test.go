package server_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/persiv/codex/edge/fakeprovider"
)

// TestAdminLimitsAndBudgets: the admin API sets and lists limits and
// budgets as the CLI does (DESIGN §10's shapes), by org id or name, and
// answers bad input in its one error shape.
func TestAdminLimitsAndBudgets(t *testing.T) {
	h := newHarness(t, fakeprovider.Options{}, nil)
	tn := h.addOrg("acme")
	admin := "http://" + h.srv.AdminAddr() + "/admin/v1/orgs/"
	js := map[string]string{"Content-Type": "application/json"}

	if st, body := adminReq(t, "POST", admin+"acme/limits", "", js, `{"rpm": 60}`); st != 200 || body != `{"org_id":"`+tn.orgID+`","key_id":"","rpm":60,"tpm":0}`+"\n" {
		t.Fatalf("set org limit: %d %s", st, body)
	}
	if st, body := adminReq(t, "POST", admin+tn.orgID+"/limits", "", js, `{"key_id":"`+tn.keyID+`","tpm": 500}`); st != 200 || !strings.Contains(body, `"tpm":500`) {
		t.Fatalf("set key limit: %d %s", st, body)
	}
	st, body := adminReq(t, "GET", admin+"acme/limits", "", nil, "")
	want := `{"limits":[{"org_id":"` + tn.orgID + `","key_id":"","rpm":60,"tpm":0},{"org_id":"` + tn.orgID + `","key_id":"` + tn.keyID + `","rpm":0,"tpm":500}]}` + "\n"
	if st != 200 || body != want {
		t.Fatalf("list limits: %d %s\nwant %s", st, body, want)
	}

	if st, body := adminReq(t, "POST", admin+"acme/budgets", "", js, `{"usd": "2.5", "period": "day"}`); st != 200 || !strings.Contains(body, `"cap_usd":2.5`) {
		t.Fatalf("set budget: %d %s", st, body)
	}
	if st, body := adminReq(t, "POST", admin+"acme/budgets", "", js, `{"key_id":"`+tn.keyID+`","usd": 7, "period": "month"}`); st != 200 || !strings.Contains(body, `"cap_usd":7`) {
		t.Fatalf("set key budget with a number: %d %s", st, body)
	}
	st, body = adminReq(t, "GET", admin+"acme/budgets", "", nil, "")
	var list struct {
		Budgets []map[string]json.RawMessage `json:"budgets"`
	}
	if err := json.Unmarshal([]byte(body), &list); st != 200 || err != nil || len(list.Budgets) != 2 {
		t.Fatalf("list budgets: %d %s", st, body)
	}
	for _, f := range []string{"org_id", "key_id", "period", "cap_usd", "spent_usd", "reserved_usd", "period_end"} {
		if _, ok := list.Budgets[0][f]; !ok {
			t.Errorf("budget lacks %q: %s", f, body)
		}
	}

	for _, c := range []struct {
		path, body string
		want       int
	}{
		{"acme/limits", `{}`, 400},
		{"acme/limits", `{"rpm": -1}`, 400},
		{"acme/limits", `{"rpm": 1, "extra": 1}`, 400},
		{"acme/limits", `{"key_id": "key_nope", "rpm": 1}`, 404},
		{"nope/limits", `{"rpm": 1}`, 404},
		{"acme/budgets", `{"usd": "1", "period": "week"}`, 400},
		{"acme/budgets", `{"usd": "-1", "period": "day"}`, 400},
		{"acme/budgets", `{"usd": "1e3", "period": "day"}`, 400},
	} {
		st, body := adminReq(t, "POST", admin+c.path, "", js, c.body)
		if st != c.want || !strings.HasPrefix(body, `{"error":{"code":`) {
			t.Errorf("POST %s %s: %d %s, want %d in the admin error shape", c.path, c.body, st, body, c.want)
		}
	}
}
