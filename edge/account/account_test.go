package account_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/account"
	"github.com/persiv/codex/edge/pipeline"
	"github.com/persiv/codex/edge/provider"
	"github.com/persiv/codex/edge/provider/anthropic"
	"github.com/persiv/codex/edge/provider/openai"
)

type sink struct{ got []edge.RequestRecord }

func (s *sink) Record(r edge.RequestRecord) bool { s.got = append(s.got, r); return true }

// TestStage checks that the account stage answers a later stage's
// *edge.Error in the route's provider shape, completes the record, and
// hands it to the sink only once it has an org.
func TestStage(t *testing.T) {
	limited := &edge.Error{Status: 429, Code: "rate_limited", Message: "slow down", RetryAfter: 3}
	cases := []struct {
		name       string
		format     string
		next       pipeline.HandlerFunc
		wantStatus int
		wantBody   string // substring
		wantSunk   bool
	}{
		{"error in openai shape", "openai", func(x *pipeline.Exchange) error { x.Rec.OrgID = "org_a"; return limited },
			429, `{"error":{"message":"slow down","type":"rate_limit_error","param":null,"code":"rate_limited"}}`, true},
		{"error in anthropic shape", "anthropic", func(x *pipeline.Exchange) error { x.Rec.OrgID = "org_a"; return limited },
			429, `"type":"error","error":{"type":"rate_limit_error","message":"slow down"}`, true},
		{"no org: metrics only", "openai", func(x *pipeline.Exchange) error { return limited }, 429, "slow down", false},
		{"answered by the stage", "openai", func(x *pipeline.Exchange) error {
			x.Rec.OrgID = "org_a"
			x.W.WriteHeader(201)
			return nil
		}, 201, "", true},
		{"other errors pass through", "openai", func(x *pipeline.Exchange) error { x.Rec.OrgID = "org_a"; return errors.New("boom") }, 500, "", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var s sink
			h := pipeline.Chain(c.next, account.Stage(&s, pipeline.NewMetrics(nil, nil)))
			rr := httptest.NewRecorder()
			r := httptest.NewRequest(http.MethodPost, "/v1/x", nil)
			w := echo.New().NewContext(r, rr).Response()
			var f provider.Format = openai.Format{}
			if c.format == "anthropic" {
				f = anthropic.Format{}
			}
			x := pipeline.New(w, r, f, "ep", "req_1", time.Now(), nil)
			err := h.Serve(x)
			if c.name == "other errors pass through" {
				if err == nil {
					t.Fatal("a non-edge error was swallowed")
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if c.wantBody != "" {
				if rr.Code != c.wantStatus || !strings.Contains(rr.Body.String(), c.wantBody) {
					t.Fatalf("answer %d %s, want %d with %s", rr.Code, rr.Body, c.wantStatus, c.wantBody)
				}
				if rr.Header().Get("Retry-After") != "3" || rr.Header().Get("Content-Type") != "application/json" {
					t.Fatalf("headers %v", rr.Header())
				}
			}
			if got := len(s.got) == 1; got != c.wantSunk {
				t.Fatalf("sunk %d records, want sunk=%v", len(s.got), c.wantSunk)
			}
			if c.wantSunk && (s.got[0].Status != c.wantStatus || s.got[0].ID != "req_1" || s.got[0].Latency <= 0) {
				t.Fatalf("record %+v", s.got[0])
			}
		})
	}
}
