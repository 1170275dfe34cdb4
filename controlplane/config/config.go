// Package config loads codex-controlplane's configuration: defaults, then
// a YAML file, then CODEX_<KEY> environment variables, each key named by
// its YAML tag (controlplane_listen ↔ CODEX_CONTROLPLANE_LISTEN).
// Secrets come from the environment or files, never from flags.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/persiv/codex/shared/wire"
)

// Config is the control plane's configuration. Every field documents its
// default.
type Config struct {
	// ControlplaneListen is the dashboard and API address. Default 127.0.0.1:8090.
	ControlplaneListen string `yaml:"controlplane_listen"`
	// DataDir holds the embedded store, JetStream, and the NATS keys. Default ./data.
	DataDir string `yaml:"data_dir"`
	// DatabaseURL selects Postgres instead of the embedded SQLite. Default unset.
	DatabaseURL string `yaml:"database_url"`
	// DatabaseAppRole is the role migrations grant row access to. Default codex_app.
	DatabaseAppRole string `yaml:"database_app_role"`
	// TLSCert and TLSKey are PEM files; required outside loopback. Default unset.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// NATSURL selects an external NATS instead of the embedded server: one
	// URL, or a cluster's nodes' URLs comma-separated. Default unset.
	NATSURL string `yaml:"nats_url"`
	// NATSCreds is a creds file for the control plane's own ingest user on
	// an external NATS. Default unset: minted from the ingest account key.
	NATSCreds string `yaml:"nats_creds"`
	// NATSListen is the embedded server's address. Default 127.0.0.1:4222.
	NATSListen string `yaml:"nats_listen"`
	// NATSPublicURL is the NATS URL given to enrolling edges, a
	// comma-separated list for a cluster (an edge connects through any
	// node on it that is up). Default: the embedded server's or NATSURL.
	NATSPublicURL string `yaml:"nats_public_url"`
	// RetainMinutes, RetainHours and RetainDays bound each usage
	// resolution. Defaults 840h (35 days), 9600h (400 days), 43800h (5 years).
	RetainMinutes time.Duration `yaml:"retain_minutes"`
	RetainHours   time.Duration `yaml:"retain_hours"`
	RetainDays    time.Duration `yaml:"retain_days"`
	// LogLevel is debug, info, warn or error. Default info.
	LogLevel string `yaml:"log_level"`

	// The key that seals the NATS seeds at rest (at most one of the
	// three). Default: none, and a development key file
	// <data_dir>/secrets.key is made next to the data it protects.

	// SecretsKMSKey is an AWS KMS key id, ARN or alias: production.
	SecretsKMSKey string `yaml:"secrets_kms_key"`
	// SecretsKEK is a 256-bit key (64 hex digits or base64). A secret:
	// give it through the environment (CODEX_SECRETS_KEK), not the file.
	SecretsKEK Secret `yaml:"secrets_kek"`
	// SecretsKEKFile is a file holding such a key.
	SecretsKEKFile string `yaml:"secrets_kek_file"`

	// NATS limits, so that no edge can fill the control plane's disk or
	// take every connection. A batch is at most wire.MaxBatchBytes (1 MiB):
	// the NATS max payload of the server and of every edge user.

	// NATSMaxConnections bounds the embedded server's client connections
	// (max_connections in nats-config's output). Default 4096.
	NATSMaxConnections int `yaml:"nats_max_connections"`
	// NATSEdgeMaxConnections bounds one edge's connections: past it, its
	// oldest is closed. Default 16.
	NATSEdgeMaxConnections int `yaml:"nats_edge_max_connections"`
	// NATSEdgeMaxPending bounds the batches one edge may have waiting in
	// its org's stream; past it that edge's publishes are refused (it
	// keeps them spooled), other edges' are not. Default 256.
	NATSEdgeMaxPending int64 `yaml:"nats_edge_max_pending"`
	// NATSOrgMaxBytes bounds an org's stream; past it that org's
	// publishes are refused. Reserved in full against
	// NATSAccountMaxStorage. Default 16777216 (16 MiB).
	NATSOrgMaxBytes int64 `yaml:"nats_org_max_bytes"`
	// NATSStreamMaxAge is how long a batch may wait in its org's stream.
	// Default 168h.
	NATSStreamMaxAge time.Duration `yaml:"nats_stream_max_age"`
	// NATSStreamReplicas is how many copies of each org's stream (and its
	// ingest consumer) a NATS cluster keeps: 3 survives the loss of one
	// node. 1 to MaxStreamReplicas; more than 1 needs a JetStream cluster
	// (nats_url), the embedded server refuses it. Existing streams are
	// brought to it at start. Default 1.
	NATSStreamReplicas int `yaml:"nats_stream_replicas"`
	// NATSAccountMaxStorage bounds the ingest account's JetStream storage
	// (and the embedded server's): with every org's stream reserving
	// NATSOrgMaxBytes for each of its NATSStreamReplicas copies, it
	// allows NATSAccountMaxStorage/(NATSOrgMaxBytes×NATSStreamReplicas)
	// orgs with edges. Default 17179869184 (16 GiB: 1024 orgs with one
	// replica, 341 with three).
	NATSAccountMaxStorage int64 `yaml:"nats_account_max_storage"`
	// LoginRate bounds dashboard sign-in attempts across all clients, per
	// minute, besides the per-email and per-address limits; LoginBurst of
	// them may come at once. An attacker with many addresses can use it
	// up, and members then wait too (429 with Retry-After): it is what
	// keeps such a flood from taking every core. Defaults 300 and 30.
	LoginRate  int `yaml:"login_rate"`
	LoginBurst int `yaml:"login_burst"`
	// PasswordHashers bounds the password hashes (argon2id, 64 MiB each)
	// running at once, for sign-in, password change and invitation alike:
	// it bounds the memory they take. A request that finds none free waits
	// up to PasswordHashWait for one, then gets 429. Defaults: the CPUs Go
	// uses (GOMAXPROCS), at most MaxDefaultPasswordHashers; 2s.
	PasswordHashers  int           `yaml:"password_hashers"`
	PasswordHashWait time.Duration `yaml:"password_hash_wait"`
}

// MaxStreamReplicas is the most copies JetStream keeps of a stream.
const MaxStreamReplicas = 5

// MaxDefaultPasswordHashers caps the default of PasswordHashers on large
// machines: four hashes are 256 MiB, and dozens of sign-ins a second.
const MaxDefaultPasswordHashers = 4

// Default returns the defaults.
func Default() Config {
	return Config{
		ControlplaneListen: "127.0.0.1:8090",
		DataDir:            "./data",
		DatabaseAppRole:    "codex_app",
		NATSListen:         "127.0.0.1:4222",
		RetainMinutes:      35 * 24 * time.Hour,
		RetainHours:        400 * 24 * time.Hour,
		RetainDays:         5 * 365 * 24 * time.Hour,
		LogLevel:           "info",

		NATSMaxConnections:     4096,
		NATSEdgeMaxConnections: 16,
		NATSEdgeMaxPending:     256,
		NATSOrgMaxBytes:        16 << 20,
		NATSStreamMaxAge:       168 * time.Hour,
		NATSStreamReplicas:     1,
		NATSAccountMaxStorage:  16 << 30,
		LoginRate:              300,
		LoginBurst:             30,
		PasswordHashers:        min(runtime.GOMAXPROCS(0), MaxDefaultPasswordHashers),
		PasswordHashWait:       2 * time.Second,
	}
}

// Load reads the YAML file at path (none when empty) over the defaults,
// then applies environment overrides from getenv.
func Load(path string, getenv func(string) (string, bool)) (Config, error) {
	c := Default()
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("read config: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
			return c, fmt.Errorf("parse config %s: %w", path, err)
		}
	}
	v := reflect.ValueOf(&c).Elem()
	for i := 0; i < v.NumField(); i++ {
		key, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("yaml"), ",")
		env := "CODEX_" + strings.ToUpper(key)
		s, ok := getenv(env)
		if !ok {
			continue
		}
		f := v.Field(i)
		switch f.Interface().(type) {
		case string, Secret:
			f.SetString(s)
		case time.Duration:
			d, err := time.ParseDuration(s)
			if err != nil {
				return c, fmt.Errorf("%s: %w", env, err)
			}
			f.SetInt(int64(d))
		case int, int64:
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil || f.OverflowInt(n) {
				return c, fmt.Errorf("%s: %q is not an integer", env, s)
			}
			f.SetInt(n)
		}
	}
	return c, c.Validate()
}

// Validate checks what would otherwise fail later.
func (c Config) Validate() error {
	switch {
	case c.ControlplaneListen == "":
		return errors.New("controlplane_listen is empty")
	case c.DataDir == "":
		return errors.New("data_dir is empty")
	case (c.TLSCert == "") != (c.TLSKey == ""):
		return errors.New("tls_cert and tls_key go together")
	case c.RetainMinutes <= 0 || c.RetainHours < c.RetainMinutes || c.RetainDays < c.RetainHours:
		return errors.New("retention must be positive and grow from minutes to hours to days")
	case c.NATSMaxConnections <= 0 || c.NATSEdgeMaxConnections <= 0 || c.NATSEdgeMaxPending <= 0 || c.NATSStreamMaxAge <= 0:
		return errors.New("nats_max_connections, nats_edge_max_connections, nats_edge_max_pending and nats_stream_max_age must be positive")
	case c.NATSStreamReplicas < 1 || c.NATSStreamReplicas > MaxStreamReplicas:
		return fmt.Errorf("nats_stream_replicas must be 1 to %d", MaxStreamReplicas)
	case c.NATSStreamReplicas > 1 && c.NATSURL == "":
		return errors.New("nats_stream_replicas above 1 needs a NATS cluster (nats_url): the embedded server keeps one copy")
	case c.NATSOrgMaxBytes < wire.MaxBatchBytes:
		return fmt.Errorf("nats_org_max_bytes must hold at least one batch (%d bytes)", wire.MaxBatchBytes)
	case c.NATSAccountMaxStorage < c.NATSOrgMaxBytes*int64(c.NATSStreamReplicas):
		return errors.New("nats_account_max_storage must be at least nats_org_max_bytes times nats_stream_replicas")
	case btoi(c.SecretsKMSKey != "")+btoi(c.SecretsKEK != "")+btoi(c.SecretsKEKFile != "") > 1:
		return errors.New("set at most one of secrets_kms_key, secrets_kek and secrets_kek_file")
	case c.LoginRate <= 0 || c.LoginBurst <= 0:
		return errors.New("login_rate and login_burst must be positive")
	case c.PasswordHashers <= 0 || c.PasswordHashWait <= 0:
		return errors.New("password_hashers and password_hash_wait must be positive")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log_level %q is not debug, info, warn or error", c.LogLevel)
	}
	return nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Secret is a configuration value never shown: printing or logging it
// shows "[redacted]".
type Secret string

// String implements fmt.Stringer.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// GoString implements fmt.GoStringer, for %#v.
func (s Secret) GoString() string { return `"` + s.String() + `"` }

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }
