package dashboard

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/persiv/codex/controlplane"
)

// Issue 14, item 4: the API and the dashboard's API answer errors from one
// kind vocabulary and one kind-to-status table, in one shape.
func TestErrorsOneTable(t *testing.T) {
	f := newFixture(t)
	org := f.env.Org(t)
	c := f.session(t, f.user(t, org, "owner@acme.example", controlplane.RoleOwner))
	tok := c.csrf("/overview")
	csrf := map[string]string{CSRFHeader: tok}
	plain := func(path string) response {
		req, _ := http.NewRequest(http.MethodPost, f.srv.URL+path, strings.NewReader("{}"))
		req.Header.Set("Content-Type", "text/plain")
		req.Header.Set(CSRFHeader, tok)
		return c.do(req)
	}
	enrollBody := `{"token":"cpenroll_x","public_key":"x","name":"e","version":"1"}`
	type check struct {
		name   string
		r      func() response
		status int
		code   string
	}
	run := func(checks []check) {
		t.Helper()
		for _, ck := range checks {
			r := ck.r()
			var got struct {
				Error struct {
					Code    string `json:"code"`
					Message string `json:"message"`
				} `json:"error"`
			}
			dec := json.NewDecoder(strings.NewReader(r.body))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&got); err != nil || r.StatusCode != ck.status || got.Error.Code != ck.code || got.Error.Message == "" {
				t.Errorf("%s: %d %s, want %d with code %q (%v)", ck.name, r.StatusCode, r.body, ck.status, ck.code, err)
			}
		}
	}
	run([]check{
		{"API, text/plain", func() response { return plain("/api/v1/enroll") }, 415, "unsupported_media_type"},
		{"dashboard API, text/plain", func() response { return plain("/api/v1/dashboard/edges/edge_x/revoke") }, 415, "unsupported_media_type"},
		{"API, bad public key", func() response { return c.postJSON("/api/v1/enroll", enrollBody, nil) }, 400, "invalid_request"},
		{"dashboard API, unknown edge", func() response { return c.postJSON("/api/v1/dashboard/edges/edge_nope/revoke", "{}", csrf) }, 404, "not_found"},
		{"dashboard API, no session", func() response { return f.client(t).get("/api/v1/dashboard/edges") }, 401, "unauthorized"},
	})
	// A store that fails is the service's fault, in both.
	f.env.Store.Close()
	good := strings.Replace(enrollBody, `"x"`, `"UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4"`, 1)
	good = strings.Replace(good, "cpenroll_x", "cpenroll_"+strings.Repeat("a", 52), 1)
	run([]check{
		{"API, store closed", func() response { return c.postJSON("/api/v1/enroll", good, nil) }, 500, "internal"},
		{"dashboard API, store closed", func() response { return c.get("/api/v1/dashboard/edges") }, 500, "internal"},
	})
}
