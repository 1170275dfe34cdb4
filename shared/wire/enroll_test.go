package wire

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// Issue 14, item 6: the enrollment exchange is one set of types on both
// sides; its JSON is byte for byte what edges and control planes already
// send.
func TestEnrollRoundTrip(t *testing.T) {
	for _, c := range []struct {
		name string
		v    any
		json string
	}{
		{"request", &EnrollRequest{Token: "cpenroll_abc", PublicKey: "UDXU4RCSJNZO", Name: "edge-eu-1", Version: "0.3.1"},
			`{"token":"cpenroll_abc","public_key":"UDXU4RCSJNZO","name":"edge-eu-1","version":"0.3.1"}`},
		{"response", &EnrollResponse{EdgeID: "edge_b2", OrgID: "org_a1", UserJWT: "eyJ0", NATSURL: "tls://nats.example:4222",
			Subject: "codex.usage.v1.org_a1.edge_b2", InboxPrefix: "_INBOX.edge_b2"},
			`{"edge_id":"edge_b2","org_id":"org_a1","user_jwt":"eyJ0","nats_url":"tls://nats.example:4222","subject":"codex.usage.v1.org_a1.edge_b2","inbox_prefix":"_INBOX.edge_b2"}`},
		{"error", &ErrorBody{Error: ErrorDetail{Code: "invalid_token", Message: "invalid or expired enrollment token"}},
			`{"error":{"code":"invalid_token","message":"invalid or expired enrollment token"}}`},
	} {
		b, err := json.Marshal(c.v)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != c.json {
			t.Errorf("%s: encodes as\n%s\nwant\n%s", c.name, b, c.json)
		}
		back := reflect.New(reflect.TypeOf(c.v).Elem()).Interface()
		dec := json.NewDecoder(strings.NewReader(c.json))
		dec.DisallowUnknownFields()
		if err := dec.Decode(back); err != nil || !reflect.DeepEqual(back, c.v) {
			t.Errorf("%s: decodes as %+v (%v), want %+v", c.name, back, err, c.v)
		}
	}
}
