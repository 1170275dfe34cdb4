package provider_test

import (
	"encoding/json"
	"net/http/httptest"
	"testing"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/fingerprint"
	"github.com/persiv/codex/edge/provider"
	"github.com/persiv/codex/edge/provider/anthropic"
	"github.com/persiv/codex/edge/provider/openai"
)

func TestRewrite(t *testing.T) {
	cases := []struct {
		name, in string
		hasOpts  bool
		want     string // exact output where the edge must keep the client's bytes
	}{
		{"no options", `{"model":"m","stream":true}`, false, `{"stream_options":{"include_usage":true},"model":"m","stream":true}`},
		{"leading space", ` { "model" : "m" , "stream":true }`, false, ` {"stream_options":{"include_usage":true}, "model" : "m" , "stream":true }`},
		{"options without usage", `{"model":"m","stream":true,"stream_options":{"x":1}}`, true, ""},
		{"usage false", `{"model":"m","stream":true,"stream_options":{"include_usage":false}}`, true, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			info := fingerprint.Info{Stream: true, HasStreamOptions: c.hasOpts}
			out, hide, err := openai.Format{}.Rewrite(openai.ChatCompletions, []byte(c.in), info)
			if err != nil || !hide {
				t.Fatalf("Rewrite: hide usage %v, err %v", hide, err)
			}
			if c.want != "" && string(out) != c.want {
				t.Fatalf("got %s, want %s", out, c.want)
			}
			var doc struct {
				Model         string
				Stream        bool
				StreamOptions map[string]any `json:"stream_options"`
			}
			if err := json.Unmarshal(out, &doc); err != nil {
				t.Fatalf("invalid JSON %s: %v", out, err)
			}
			if doc.Model != "m" || !doc.Stream || doc.StreamOptions["include_usage"] != true {
				t.Fatalf("lost or missing fields: %s", out)
			}
			if c.name == "options without usage" && doc.StreamOptions["x"] != float64(1) {
				t.Fatalf("client's stream option dropped: %s", out)
			}
		})
	}
}

func TestRewriteLeavesOthers(t *testing.T) {
	body := []byte(`{"model":"m","stream":true}`)
	for _, c := range []struct {
		name string
		f    provider.Format
		ep   provider.Endpoint
		info fingerprint.Info
	}{
		{"chat json", openai.Format{}, openai.ChatCompletions, fingerprint.Info{}},
		{"chat stream asking for usage", openai.Format{}, openai.ChatCompletions, fingerprint.Info{Stream: true, HasStreamOptions: true, IncludeUsage: true}},
		{"responses stream", openai.Format{}, openai.Responses, fingerprint.Info{Stream: true}},
		{"messages stream", anthropic.Format{}, anthropic.Messages, fingerprint.Info{Stream: true}},
	} {
		out, hide, err := c.f.Rewrite(c.ep, body, c.info)
		if err != nil || hide || string(out) != string(body) {
			t.Errorf("%s: Rewrite = %s, %v, %v; want the body unchanged", c.name, out, hide, err)
		}
	}
}

var formats = provider.Formats{openai.Format{}, anthropic.Format{}}

func TestPick(t *testing.T) {
	routes := formats.Routes()
	for _, c := range []struct {
		method, path, header string
		want                 provider.Endpoint
		wantProvider         string
	}{
		{"POST", "/v1/chat/completions", "", openai.ChatCompletions, "openai"},
		{"GET", "/v1/models", "", openai.Models, "openai"},
		{"GET", "/v1/models", "anthropic-version", anthropic.Models, "anthropic"},
		{"POST", "/v1/messages", "", anthropic.Messages, "anthropic"},
		{"POST", "/v1/messages/count_tokens", "anthropic-version", anthropic.CountTokens, "anthropic"},
	} {
		r := httptest.NewRequest(c.method, c.path, nil)
		if c.header != "" {
			r.Header.Set(c.header, "2023-06-01")
		}
		ms, ok := routes[[2]string{c.method, c.path}]
		if !ok {
			t.Errorf("%s %s: no route", c.method, c.path)
			continue
		}
		m := provider.Pick(ms, r)
		if m.Route.Endpoint != c.want || string(m.Format.Provider()) != c.wantProvider {
			t.Errorf("%s %s (%s): picked %s %s", c.method, c.path, c.header, m.Format.Provider(), m.Route.Endpoint)
		}
	}
}

func TestOwner(t *testing.T) {
	for _, c := range []struct {
		path, header, want string
	}{
		{"/v1/unknown", "", "openai"},
		{"/v1/messages/batches", "", "anthropic"},
		{"/v1/unknown", "anthropic-version", "anthropic"},
	} {
		r := httptest.NewRequest("GET", c.path, nil)
		if c.header != "" {
			r.Header.Set(c.header, "2023-06-01")
		}
		if got := formats.Owner(r).Provider(); string(got) != c.want {
			t.Errorf("%s %s: owner %s, want %s", c.path, c.header, got, c.want)
		}
	}
}

// TestErrorBodies checks each format's error shape field by field, as the
// providers' SDKs decode them.
func TestErrorBodies(t *testing.T) {
	e := &edge.Error{Status: 429, Code: "rate_limit_exceeded", Message: "slow down", Type: "requests"}
	var oa struct {
		Error struct {
			Message, Type, Code string
			Param               *string
		}
	}
	if err := json.Unmarshal(openai.Format{}.ErrorBody(e, "req_1"), &oa); err != nil {
		t.Fatal(err)
	}
	if oa.Error.Message != "slow down" || oa.Error.Type != "requests" || oa.Error.Code != "rate_limit_exceeded" {
		t.Errorf("openai error %+v", oa)
	}
	plain := &edge.Error{Status: 503, Code: "store_unavailable", Message: "later"}
	if err := json.Unmarshal(openai.Format{}.ErrorBody(plain, ""), &oa); err != nil || oa.Error.Type != "server_error" {
		t.Errorf("openai type for 503: %+v, %v", oa, err)
	}

	var an struct {
		Type  string
		Error struct{ Type, Message string }
		ID    string `json:"request_id"`
	}
	if err := json.Unmarshal(anthropic.Format{}.ErrorBody(e, "req_1"), &an); err != nil {
		t.Fatal(err)
	}
	if an.Type != "error" || an.Error.Type != "rate_limit_error" || an.Error.Message != "slow down" || an.ID != "req_1" {
		t.Errorf("anthropic error %+v", an)
	}
	if name, _ := (anthropic.Format{}).StreamError(e, ""); name != "error" {
		t.Errorf("anthropic stream error event %q", name)
	}
	if name, _ := (openai.Format{}).StreamError(e, ""); name != "" {
		t.Errorf("openai stream error event %q", name)
	}
}

func TestIsFinal(t *testing.T) {
	for _, c := range []struct {
		f          provider.Format
		ep         provider.Endpoint
		name, data string
		want       bool
	}{
		{openai.Format{}, openai.ChatCompletions, "", "[DONE]", true},
		{openai.Format{}, openai.ChatCompletions, "", `{"choices":[]}`, false},
		{openai.Format{}, openai.Responses, "response.completed", `{}`, true},
		{openai.Format{}, openai.Responses, "", `{"type":"response.completed"}`, true},
		{openai.Format{}, openai.Responses, "response.output_text.delta", `{}`, false},
		{anthropic.Format{}, anthropic.Messages, "message_stop", `{"type":"message_stop"}`, true},
		{anthropic.Format{}, anthropic.Messages, "", `{"type":"message_stop"}`, true},
		{anthropic.Format{}, anthropic.Messages, "message_delta", `{}`, false},
		{anthropic.Format{}, anthropic.CountTokens, "message_stop", `{}`, false},
	} {
		if got := c.f.IsFinal(c.ep, []byte(c.name), []byte(c.data)); got != c.want {
			t.Errorf("%s %s %q %s: IsFinal %v", c.f.Provider(), c.ep, c.name, c.data, got)
		}
	}
}
