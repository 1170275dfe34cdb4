package deploytest

import (
	"reflect"
	"slices"
	"strings"

	cpconfig "github.com/persiv/codex/controlplane/config"
	edgeconfig "github.com/persiv/codex/edge/config"
	"github.com/persiv/codex/edge/keyring/byok"
	"github.com/persiv/codex/edge/keyring/kek"
)

// Binary is a program a deployment configures through its environment.
type Binary string

const (
	Edge         Binary = "codex-edge"
	Controlplane Binary = "codex-controlplane"
)

// Origin says why a binary is known to read a variable.
type Origin string

const (
	// FromConfig: a key of the binary's config package (CODEX_<KEY>).
	FromConfig Origin = "config"
	// FromCode: named by a constant or a literal in the binary's code.
	FromCode Origin = "code"
	// FromSDK: read by a library the binary uses (the AWS SDK).
	FromSDK Origin = "sdk"
	// Assumed: not read by any binary yet; deployments set it because a
	// design section names the setting and an open issue will add it.
	// Every assumed variable is listed in AssumedVars with its reason.
	FromAssumption Origin = "assumed"
)

// AssumedVars lists the variables deployments set before a binary reads them,
// each with the reason. A test fails once a binary reads one of them, so
// this list only ever shrinks.
var AssumedVars = map[Binary]map[string]string{
	Edge: {},
}

// Design8 lists, per binary, the DESIGN §8 variables a production
// deployment of it sets (or may set, for the optional ones).
var Design8 = map[Binary][]string{
	Edge: {
		"CODEX_LISTEN", "CODEX_ADMIN_LISTEN", "CODEX_DATA_DIR", "CODEX_DATABASE_URL",
		"CODEX_DATABASE_APP_ROLE", "CODEX_REDIS_URL", "CODEX_TLS_CERT", "CODEX_TLS_KEY", "CODEX_KEK",
		"CODEX_UPSTREAM_CONNECT_TIMEOUT", "CODEX_UPSTREAM_HEADER_TIMEOUT", "CODEX_UPSTREAM_IDLE_TIMEOUT",
		"CODEX_MAX_BODY_BYTES", "CODEX_TELEMETRY_WINDOW",
	},
	Controlplane: {
		"CODEX_CONTROLPLANE_LISTEN", "CODEX_DATA_DIR", "CODEX_DATABASE_URL", "CODEX_DATABASE_APP_ROLE",
		"CODEX_TLS_CERT", "CODEX_TLS_KEY", "CODEX_NATS_URL",
	},
}

// Design8Optional lists the DESIGN §8 variables a deployment sets only for
// some choices (BYOK instead of KMS, a KMS endpoint, NATS credentials).
var Design8Optional = map[Binary][]string{
	Edge:         {"CODEX_BYOK_KEY", "CODEX_BYOK_KEY_FILE", "CODEX_BYOK_PREVIOUS_KEYS", "AWS_ENDPOINT_URL_KMS"},
	Controlplane: {"CODEX_NATS_CREDS"},
}

// Vars returns every environment variable b reads, with why it is known,
// including the assumed ones (AssumedVars). Variables that are not
// settings (provider credentials named by the operator) are not in it.
func Vars(b Binary) map[string]Origin {
	m := read(b)
	for v := range AssumedVars[b] {
		if _, ok := m[v]; !ok {
			m[v] = FromAssumption
		}
	}
	return m
}

// read returns the variables b's code reads today.
func read(b Binary) map[string]Origin {
	m := map[string]Origin{}
	switch b {
	case Edge:
		for _, k := range edgeconfig.Keys() {
			m[edgeconfig.EnvName(k)] = FromConfig
		}
		// CODEX_CONFIG: cmd/codex-edge reads the YAML file's path from it
		// when --config is absent.
		for _, v := range []string{kek.Env, byok.EnvKey, byok.EnvKeyFile, byok.EnvPreviousKeys, edgeconfig.AdminTokenEnv, "CODEX_CONFIG"} {
			if _, ok := m[v]; !ok {
				m[v] = FromCode
			}
		}
		m["AWS_ENDPOINT_URL_KMS"] = FromSDK
	case Controlplane:
		for _, k := range controlplaneKeys() {
			m["CODEX_"+strings.ToUpper(k)] = FromConfig
		}
	}
	return m
}

// controlplaneKeys lists the control plane's configuration keys: its
// config package has no Keys function, so they come from the same yaml
// tags its loader reads.
func controlplaneKeys() []string {
	t := reflect.TypeFor[cpconfig.Config]()
	keys := make([]string, 0, t.NumField())
	for i := range t.NumField() {
		k, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if k != "" && k != "-" {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// IsSetting reports whether name is in the namespace deployments must
// check: CODEX_* and the AWS SDK variables the binaries document.
func IsSetting(name string) bool {
	return strings.HasPrefix(name, "CODEX_") || strings.HasPrefix(name, "AWS_ENDPOINT_URL")
}

// Unread returns the settings among names that b does not read, sorted.
func Unread(b Binary, names []string) []string {
	known := Vars(b)
	var out []string
	for _, n := range names {
		if _, ok := known[n]; IsSetting(n) && !ok {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
