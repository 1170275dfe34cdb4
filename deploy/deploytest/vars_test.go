package deploytest

import (
	"testing"

	edgeconfig "github.com/persiv/codex/edge/config"
)

func TestVarsIncludeDesign8(t *testing.T) {
	for b, names := range Design8 {
		known := Vars(b)
		for _, n := range append(names, Design8Optional[b]...) {
			if _, ok := known[n]; !ok {
				t.Errorf("%s: DESIGN §8 variable %s is not read by the binary (config keys, code constants)", b, n)
			}
		}
	}
}

// An assumed variable that a binary now reads must leave Assumed, so the
// report of what deployments set ahead of the code stays true.
func TestAssumedAreNotYetRead(t *testing.T) {
	for b, vars := range AssumedVars {
		for v, why := range vars {
			if why == "" {
				t.Errorf("%s: assumed variable %s has no reason", b, v)
			}
			if o, ok := read(b)[v]; ok {
				t.Errorf("%s now reads %s (%s): remove it from AssumedVars", b, v, o)
			}
			if Vars(b)[v] != FromAssumption {
				t.Errorf("%s: assumed variable %s missing from Vars", b, v)
			}
		}
	}
}

func TestUnread(t *testing.T) {
	tests := []struct {
		b     Binary
		names []string
		want  []string
	}{
		{Edge, []string{"CODEX_LISTEN", "CODEX_KEK", "CODEX_BYOK_KEY_FILE", "OPENAI_API_KEY", "AWS_ENDPOINT_URL_KMS"}, nil},
		{Edge, []string{"CODEX_LISTEN", "CODEX_LISTNE", "CODEX_NATS_URL"}, []string{"CODEX_LISTNE", "CODEX_NATS_URL"}},
		{Controlplane, []string{"CODEX_CONTROLPLANE_LISTEN", "CODEX_NATS_URL", "CODEX_NATS_CREDS", "CODEX_NATS_PUBLIC_URL"}, nil},
		{Controlplane, []string{"CODEX_KEK", "CODEX_KEK", "SSL_CERT_FILE"}, []string{"CODEX_KEK"}},
	}
	for _, tt := range tests {
		got := Unread(tt.b, tt.names)
		if len(got) != len(tt.want) {
			t.Errorf("Unread(%s, %v) = %v, want %v", tt.b, tt.names, got, tt.want)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("Unread(%s, %v) = %v, want %v", tt.b, tt.names, got, tt.want)
			}
		}
	}
}

func TestEdgeVarsFollowConfigKeys(t *testing.T) {
	v := Vars(Edge)
	for _, k := range edgeconfig.Keys() {
		if v[edgeconfig.EnvName(k)] != FromConfig {
			t.Errorf("edge config key %s is not in Vars(Edge) as a config variable", k)
		}
	}
}
