// Package config loads the edge's configuration: a YAML file whose every key
// can be overridden by an environment variable CODEX_<KEY>. Secrets come
// from the environment or files, never from flags, and are never printed.
package config

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/persiv/codex/edge/audit"
	"github.com/persiv/codex/edge/budget"
	"github.com/persiv/codex/edge/cache/memory"
	"github.com/persiv/codex/edge/keyring"
	"github.com/persiv/codex/edge/metadata"
	"github.com/persiv/codex/edge/proxy"
	"github.com/persiv/codex/edge/telemetry"
	"github.com/persiv/codex/shared/wire"
)

// Config is the edge's configuration. The yaml tag of each field is its key;
// its environment variable is CODEX_ followed by the key in upper case.
type Config struct {
	Listen          string `yaml:"listen"`            // client-facing address
	AdminListen     string `yaml:"admin_listen"`      // admin API and /metrics
	DataDir         string `yaml:"data_dir"`          // embedded store, spool, local key
	DatabaseURL     string `yaml:"database_url"`      // Postgres instead of SQLite
	DatabaseAppRole string `yaml:"database_app_role"` // role migrations grant row access to
	// DatabaseOwnerURL is the URL of the Postgres role that owns the
	// schema, which migrations run as: `codex-edge migrate` (which falls
	// back to DatabaseURL without it), and serve with DatabaseMigrate.
	// serve itself connects as DatabaseAppRole through DatabaseURL.
	DatabaseOwnerURL string `yaml:"database_owner_url"`
	// DatabaseMigrate lets serve migrate a Postgres store at start-up, as
	// DatabaseOwnerURL's role (which it then needs), before its checks.
	DatabaseMigrate bool   `yaml:"database_migrate"`
	RedisURL        string `yaml:"redis_url"` // Redis instead of the in-process cache
	TLSCert         string `yaml:"tls_cert"`  // PEM file
	TLSKey          string `yaml:"tls_key"`   // PEM file
	KEK             string `yaml:"kek"`       // local, byok, awskms:<key>

	UpstreamConnectTimeout time.Duration `yaml:"upstream_connect_timeout"`
	UpstreamHeaderTimeout  time.Duration `yaml:"upstream_header_timeout"`
	UpstreamIdleTimeout    time.Duration `yaml:"upstream_idle_timeout"`
	MaxBodyBytes           int64         `yaml:"max_body_bytes"`
	// ClientHeaderTimeout bounds reading a client's request headers, and
	// ClientReadTimeout the whole request, headers and body, on both
	// listeners: a client sending them slower (slowloris) has its
	// connection closed, and a body still arriving is refused with 408.
	// Neither bounds the answer, which may stream for long.
	ClientHeaderTimeout time.Duration `yaml:"client_header_timeout"`
	ClientReadTimeout   time.Duration `yaml:"client_read_timeout"`
	// BodyTimeout bounds reading one request body (after its headers):
	// a body still arriving then is answered 408. The earlier of it and
	// ClientReadTimeout applies.
	BodyTimeout time.Duration `yaml:"body_timeout"`
	// MaxInflightBodyBytes bounds the request-body bytes held by all
	// requests in progress together (streams hold theirs until they end);
	// a request whose body would pass it is answered 503 with
	// retry-after: 1. At least MaxBodyBytes.
	MaxInflightBodyBytes int64 `yaml:"max_inflight_body_bytes"`
	// AuthFailureLimit is how many failed gateway-key checks (well-formed
	// keys that are unknown or revoked) one client address may make per
	// AuthFailureWindow; past it, keys the edge does not already hold as
	// valid are answered 429 with retry-after from that address until the
	// window ends. Keys it holds (used lately) keep working.
	AuthFailureLimit  int           `yaml:"auth_failure_limit"`
	AuthFailureWindow time.Duration `yaml:"auth_failure_window"`
	// AuthFailureClients bounds the client addresses the limiter
	// remembers (about 200 bytes each); the least recent are forgotten.
	AuthFailureClients int `yaml:"auth_failure_clients"`
	// TrustedProxies lists the load balancers (CIDRs or addresses,
	// comma-separated) whose X-Forwarded-For header names the client
	// address; empty means the peer's address is the client's.
	TrustedProxies string `yaml:"trusted_proxies"`

	// MetadataQueue bounds the request-metadata records waiting to be
	// written; a full queue drops records and counts every drop.
	MetadataQueue int `yaml:"metadata_queue"`
	// MetadataBatch is the most records written in one transaction.
	MetadataBatch int `yaml:"metadata_batch"`
	// MetadataFlush is the longest a record waits before its batch is written.
	MetadataFlush time.Duration `yaml:"metadata_flush"`
	// AuditQueue bounds the audit events of levels none and hash waiting
	// to be written; a full queue drops events and counts every drop.
	AuditQueue int `yaml:"audit_queue"`
	// AuditMaxBytes bounds the request body and response one audit event
	// keeps at level full; a larger request is answered 503
	// audit_unavailable, since it could not be recorded whole.
	AuditMaxBytes int `yaml:"audit_max_bytes"`
	// AuditRetention is how long the content of level-full audit events
	// is kept (Go syntax: the default 8760h is 365 days); older content is
	// removed, never the events' metadata or chain. 0 keeps it for ever.
	AuditRetention time.Duration `yaml:"audit_retention"`
	// Retention is how long request metadata is kept: a background job of
	// serve deletes older records (DefaultRetention, 90 days; at least a
	// day).
	Retention time.Duration `yaml:"retention"`
	// ChangePoll is how often the store's change feed is read, so keys and
	// settings changed by another process take effect.
	ChangePoll time.Duration `yaml:"change_poll"`
	// ShutdownDrain is how long a stopping edge (SIGTERM) keeps serving
	// before it stops accepting connections: meanwhile /readyz answers
	// 503 and every answer carries Connection: close, so load balancers
	// and clients move to other instances instead of sending a request on
	// a kept-alive connection at the moment it is closed (a POST that
	// meets a closed connection is lost, and no client retries it).
	// Default 5s; 0 stops at once.
	ShutdownDrain time.Duration `yaml:"shutdown_drain"`

	// BudgetUnpriced is what a budget does with a request for a model the
	// price table does not price: "refuse" it (400 model_not_priced) or
	// "allow" it, reserving and settling nothing.
	BudgetUnpriced string `yaml:"budget_unpriced"`
	// BudgetReservationTTL is how long a budget reservation lives when its
	// request never ends it (its instance died): it bounds how long such a
	// reservation holds budget back, and should exceed the longest answer.
	BudgetReservationTTL time.Duration `yaml:"budget_reservation_ttl"`
	// BudgetFlush is how often settled spend is written to the store; a
	// Redis flush loses at most this long of other instances' spend.
	BudgetFlush time.Duration `yaml:"budget_flush"`

	// CacheEnabled turns the response cache and request coalescing on for
	// orgs and keys without an override.
	CacheEnabled bool `yaml:"cache_enabled"`
	// CacheTTL is an entry's default lifetime; x-codex-cache-ttl may set
	// another, up to CacheMaxTTL.
	CacheTTL    time.Duration `yaml:"cache_ttl"`
	CacheMaxTTL time.Duration `yaml:"cache_max_ttl"`
	// CacheMaxEntryBytes is the largest answer stored.
	CacheMaxEntryBytes int `yaml:"cache_max_entry_bytes"`
	// CacheBudgetBytes bounds the in-process cache (when RedisURL is empty).
	CacheBudgetBytes int64 `yaml:"cache_budget_bytes"`
	// CacheOverrides sets the cache per org or per key (a key's setting
	// wins over its org's): "org_123=off; key_456=on,ttl=10m". See
	// ParseCacheOverrides; the setting is parsed once, as it loads.
	CacheOverrides CacheOverrides `yaml:"cache_overrides"`

	PricingFile     string        `yaml:"pricing_file"` // operator prices over the shipped table
	TelemetryWindow time.Duration `yaml:"telemetry_window"`
	// ControlplaneURL and EnrollmentToken let a deployment enroll the edge
	// at start-up (as `telemetry enroll --url --token` does) when it is not
	// enrolled yet. The token is a one-time secret: give it through the
	// environment, e.g. from a secret store.
	ControlplaneURL string `yaml:"controlplane_url"`
	EnrollmentToken string `yaml:"enrollment_token"`
	// ControlplanePins pins the control plane's TLS keys for enrollment
	// (HTTPS) and telemetry (NATS): base64 SHA-256 digests of the
	// certificates' SubjectPublicKeyInfo, comma-separated; the current
	// key's and a backup's. Unset: no pinning (the CAs alone decide).
	ControlplanePins telemetry.Pins `yaml:"controlplane_pins"`
	// ShareMetrics, when set to true or false, is applied to the sharing
	// toggle at start-up; empty leaves the toggle as the customer last set
	// it (CLI or admin API). Sharing is off by default.
	ShareMetrics string `yaml:"share_metrics"`
	// TelemetryNames labels workspaces and keys in shared metrics by their
	// names instead of HMAC pseudonyms: the customer's explicit opt-in.
	TelemetryNames bool `yaml:"telemetry_names"`
	// TelemetryDimensions chooses the row dimensions shared metrics carry:
	// a comma-separated subset of workspace, provider, model, key_ref,
	// memory (empty: all of them; "none": none). A withheld one arrives as
	// "other" (a memory as other@0). Cache status and status class are
	// always sent.
	TelemetryDimensions string `yaml:"telemetry_dimensions"`
	// TelemetryMinCount folds rows of fewer requests in a window into one
	// "other" row (per cache status and status class), memory uses of
	// fewer requests into one "other" use and audit counts of fewer
	// records into an "other" workspace. 0: none are.
	TelemetryMinCount int64 `yaml:"telemetry_min_count"`
	// TelemetryHeartbeat: windows without usage are not sent; a batch
	// without rows, which tells the control plane the edge is alive,
	// at most this often. Default 15m.
	TelemetryHeartbeat time.Duration `yaml:"telemetry_heartbeat"`
	// TelemetryQueue bounds the request records waiting to be aggregated;
	// a full queue drops records and counts every drop.
	TelemetryQueue int `yaml:"telemetry_queue"`
	// TelemetrySpoolMaxBatches and TelemetrySpoolMaxBytes bound the
	// on-disk spool of unsent batches; past them the oldest are dropped.
	TelemetrySpoolMaxBatches int   `yaml:"telemetry_spool_max_batches"`
	TelemetrySpoolMaxBytes   int64 `yaml:"telemetry_spool_max_bytes"`
	// TelemetrySpoolLease: on Postgres, where every replica shares the
	// spool, how long a replica holds a batch it is sending before
	// another may send it (a replica that stopped leaves its batch to the
	// others after this). Longer than a publish attempt (10s). Default 30s.
	TelemetrySpoolLease time.Duration `yaml:"telemetry_spool_lease"`
	Pprof               bool          `yaml:"pprof"` // /debug/pprof on the admin listener
	// AdminTokenFile holds the bearer token the admin listener's
	// /admin/v1, /metrics and /debug/pprof require (/healthz and /readyz
	// stay open). Without one the admin listener must be on a loopback
	// address and answers only to Host localhost, 127.0.0.1 or [::1]. The
	// token itself may be given as CODEX_ADMIN_TOKEN.
	AdminTokenFile string `yaml:"admin_token_file"`
	// APIKeyEnvDeny adds to the environment variables a provider key may
	// never be read from (`providers set --api-key-env`): comma-separated
	// names, or prefixes ending in '*' ("GITHUB_TOKEN, VAULT_*"). Variables
	// starting CODEX_ or AWS_ are always denied (edge.CheckAPIKeyEnv): the
	// edge sends the key to the provider as a bearer token.
	APIKeyEnvDeny string `yaml:"api_key_env_deny"`
	// DEKMaxSeals is how many records one data key seals, over every
	// instance, before new writes move to a new generation; at most
	// keyring.DefaultMaxSeals (2^30), well below AES-GCM's 2^32 limit for
	// random nonces. Counted in the store a block at a time.
	DEKMaxSeals int64 `yaml:"dek_max_seals"`
	// DEKMaxAge is how old a data key may get before new writes move to a
	// new generation. Older generations keep opening what they sealed.
	DEKMaxAge time.Duration `yaml:"dek_max_age"`
	LogLevel  string        `yaml:"log_level"` // debug, info, warn, error
}

// APIKeyEnvDenyList is APIKeyEnvDeny split into its entries.
func (c Config) APIKeyEnvDenyList() []string {
	var out []string
	for _, e := range strings.Split(c.APIKeyEnvDeny, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// DefaultAuditRetention is how long level-full audit content is kept by
// default: 365 days (DESIGN §10).
const DefaultAuditRetention = 365 * 24 * time.Hour

// MaxShutdownDrain bounds Config.ShutdownDrain: orchestrators kill a
// process that takes much longer to stop.
const MaxShutdownDrain = 5 * time.Minute

// Default returns the embedded defaults: everything runs with no file.
// Each package's own defaults are the source of its settings' defaults;
// only what belongs to no package (listeners, the client-side timeouts,
// the change feed's poll) is chosen here.
func Default() Config {
	px := proxy.DefaultOptions()
	md := metadata.DefaultOptions()
	aw := audit.DefaultWriterOptions()
	return Config{
		Listen:                   "127.0.0.1:8080",
		AdminListen:              "127.0.0.1:8081",
		DataDir:                  "./data",
		DatabaseAppRole:          "codex_app",
		KEK:                      "local",
		UpstreamConnectTimeout:   px.ConnectTimeout,
		UpstreamHeaderTimeout:    px.HeaderTimeout,
		UpstreamIdleTimeout:      px.IdleTimeout,
		MaxBodyBytes:             px.MaxBodyBytes,
		ClientHeaderTimeout:      10 * time.Second,
		ClientReadTimeout:        time.Minute,
		BodyTimeout:              px.BodyTimeout,
		MaxInflightBodyBytes:     px.MaxInflightBodyBytes,
		AuthFailureLimit:         px.AuthFailureLimit,
		AuthFailureWindow:        px.AuthFailureWindow,
		AuthFailureClients:       px.AuthFailureClients,
		MetadataQueue:            md.Queue,
		MetadataBatch:            md.Batch,
		MetadataFlush:            md.Flush,
		AuditQueue:               aw.Queue,
		AuditMaxBytes:            px.Audit.MaxContentBytes,
		AuditRetention:           DefaultAuditRetention,
		ChangePoll:               time.Second,
		ShutdownDrain:            5 * time.Second,
		TelemetryWindow:          telemetry.DefaultWindow,
		TelemetryQueue:           telemetry.DefaultQueue,
		TelemetryHeartbeat:       telemetry.DefaultHeartbeat,
		Retention:                DefaultRetention,
		TelemetrySpoolMaxBatches: telemetry.DefaultSpoolMaxBatches,
		TelemetrySpoolMaxBytes:   telemetry.DefaultSpoolMaxBytes,
		TelemetrySpoolLease:      telemetry.DefaultSpoolLease,
		BudgetUnpriced:           "refuse",
		BudgetReservationTTL:     budget.DefaultReservationTTL,
		BudgetFlush:              budget.DefaultFlush,
		CacheEnabled:             true,
		CacheTTL:                 px.Cache.TTL,
		CacheMaxTTL:              px.Cache.MaxTTL,
		CacheMaxEntryBytes:       px.Cache.MaxEntryBytes,
		CacheBudgetBytes:         memory.DefaultBudget,
		DEKMaxSeals:              keyring.DefaultMaxSeals,
		DEKMaxAge:                keyring.DefaultMaxAge,
		LogLevel:                 "info",
	}
}

// Load reads the defaults, then the YAML file at path (if path is not
// empty), then CODEX_* variables from getenv, and validates the result.
func Load(path string, getenv func(string) string) (Config, error) {
	c := Default()
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("open config: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		// An empty file decodes as io.EOF: it means "no settings".
		if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
			return c, fmt.Errorf("config %s: %w", path, err)
		}
	}
	if err := applyEnv(&c, getenv); err != nil {
		return c, err
	}
	return c, c.Validate()
}

// EnvName is the environment variable overriding the YAML key.
func EnvName(key string) string { return "CODEX_" + strings.ToUpper(key) }

// AdminTokenEnv is the variable that may hold the admin API's bearer token
// itself, instead of a file (AdminTokenFile). It is not a config key: a
// secret has no place in the YAML file.
const AdminTokenEnv = "CODEX_ADMIN_TOKEN" //nolint:gosec // G101: the variable's name, not a credential

// Keys lists every configuration key, for documentation and tests.
func Keys() []string {
	t := reflect.TypeOf(Config{})
	keys := make([]string, 0, t.NumField())
	for i := range t.NumField() {
		keys = append(keys, t.Field(i).Tag.Get("yaml"))
	}
	return keys
}

func applyEnv(c *Config, getenv func(string) string) error {
	v := reflect.ValueOf(c).Elem()
	t := v.Type()
	for i := range t.NumField() {
		name := EnvName(t.Field(i).Tag.Get("yaml"))
		s := strings.TrimSpace(getenv(name))
		if s == "" {
			continue
		}
		f := v.Field(i)
		if u, ok := f.Addr().Interface().(encoding.TextUnmarshaler); ok {
			if err := u.UnmarshalText([]byte(s)); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			continue
		}
		switch {
		case f.Type() == reflect.TypeOf(time.Duration(0)):
			d, err := time.ParseDuration(s)
			if err != nil {
				return fmt.Errorf("%s: not a duration (use Go syntax such as 2s or 5m): %q", name, s)
			}
			f.SetInt(int64(d))
		case f.Kind() == reflect.Int || f.Kind() == reflect.Int64:
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return fmt.Errorf("%s: not an integer: %q", name, s)
			}
			f.SetInt(n)
		case f.Kind() == reflect.Bool:
			b, err := strconv.ParseBool(s)
			if err != nil {
				return fmt.Errorf("%s: not a boolean: %q", name, s)
			}
			f.SetBool(b)
		case f.Kind() == reflect.String:
			f.SetString(s)
		default:
			return fmt.Errorf("%s: unsupported type %s", name, f.Type())
		}
	}
	return nil
}

// Validate checks the configuration as a whole; only a malformed
// configuration stops start-up.
func (c Config) Validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	for _, a := range []struct{ key, addr string }{{"listen", c.Listen}, {"admin_listen", c.AdminListen}} {
		_, _, err := net.SplitHostPort(a.addr)
		check(err == nil, "%s: %q is not host:port", EnvName(a.key), a.addr)
	}
	check((c.TLSCert == "") == (c.TLSKey == ""), "CODEX_TLS_CERT and CODEX_TLS_KEY must be set together")
	check(c.UpstreamConnectTimeout > 0, "CODEX_UPSTREAM_CONNECT_TIMEOUT must be positive")
	check(c.UpstreamHeaderTimeout > 0, "CODEX_UPSTREAM_HEADER_TIMEOUT must be positive")
	check(c.UpstreamIdleTimeout > 0, "CODEX_UPSTREAM_IDLE_TIMEOUT must be positive")
	check(c.MaxBodyBytes > 0, "CODEX_MAX_BODY_BYTES must be positive")
	check(c.ClientHeaderTimeout > 0, "CODEX_CLIENT_HEADER_TIMEOUT must be positive")
	check(c.ClientReadTimeout >= c.ClientHeaderTimeout, "CODEX_CLIENT_READ_TIMEOUT must be at least CODEX_CLIENT_HEADER_TIMEOUT")
	check(c.BodyTimeout > 0, "CODEX_BODY_TIMEOUT must be positive")
	check(c.MaxInflightBodyBytes >= c.MaxBodyBytes, "CODEX_MAX_INFLIGHT_BODY_BYTES must be at least CODEX_MAX_BODY_BYTES")
	check(c.AuthFailureLimit > 0, "CODEX_AUTH_FAILURE_LIMIT must be positive")
	check(c.AuthFailureWindow > 0, "CODEX_AUTH_FAILURE_WINDOW must be positive")
	check(c.AuthFailureClients > 0, "CODEX_AUTH_FAILURE_CLIENTS must be positive")
	if _, err := ParseTrustedProxies(c.TrustedProxies); err != nil {
		errs = append(errs, fmt.Errorf("CODEX_TRUSTED_PROXIES: %w", err))
	}
	check(c.MetadataQueue > 0, "CODEX_METADATA_QUEUE must be positive")
	check(c.MetadataBatch > 0, "CODEX_METADATA_BATCH must be positive")
	check(c.MetadataFlush > 0, "CODEX_METADATA_FLUSH must be positive")
	check(c.AuditQueue > 0, "CODEX_AUDIT_QUEUE must be positive")
	check(c.AuditMaxBytes > 0, "CODEX_AUDIT_MAX_BYTES must be positive")
	check(c.AuditRetention >= 0, "CODEX_AUDIT_RETENTION must not be negative")
	check(c.ChangePoll > 0, "CODEX_CHANGE_POLL must be positive")
	check(c.ShutdownDrain >= 0 && c.ShutdownDrain <= MaxShutdownDrain, "CODEX_SHUTDOWN_DRAIN must be between 0 and 5m")
	check(c.TelemetryWindow > 0 && c.TelemetryWindow <= wire.MaxWindow, "CODEX_TELEMETRY_WINDOW must be positive and at most %s", wire.MaxWindow)
	check(c.TelemetryQueue > 0, "CODEX_TELEMETRY_QUEUE must be positive")
	check(c.Retention >= 24*time.Hour, "CODEX_RETENTION must be at least 24h")
	_, dimErr := ParseDimensions(c.TelemetryDimensions)
	check(dimErr == nil, "CODEX_TELEMETRY_DIMENSIONS: %v", dimErr)
	check(c.TelemetryMinCount >= 0, "CODEX_TELEMETRY_MIN_COUNT must not be negative")
	check(c.TelemetryHeartbeat > 0 && c.TelemetryHeartbeat <= wire.MaxHeartbeatS*time.Second, "CODEX_TELEMETRY_HEARTBEAT must be positive and at most 24h")
	check(c.TelemetrySpoolMaxBatches > 0, "CODEX_TELEMETRY_SPOOL_MAX_BATCHES must be positive")
	check(c.TelemetrySpoolMaxBytes > 0, "CODEX_TELEMETRY_SPOOL_MAX_BYTES must be positive")
	// A lease no longer than a publish attempt lets another replica send a
	// batch whose sender is still waiting for its acknowledgement.
	check(c.TelemetrySpoolLease > telemetry.PublishTimeout, "CODEX_TELEMETRY_SPOOL_LEASE must be longer than a publish attempt (%s)", telemetry.PublishTimeout)
	check(c.DataDir != "", "CODEX_DATA_DIR must not be empty")
	check(c.ShareMetrics == "" || c.ShareMetrics == "true" || c.ShareMetrics == "false", "CODEX_SHARE_METRICS must be true, false or unset")
	check((c.ControlplaneURL == "") == (c.EnrollmentToken == ""), "CODEX_CONTROLPLANE_URL and CODEX_ENROLLMENT_TOKEN must be set together")
	check(c.BudgetUnpriced == "refuse" || c.BudgetUnpriced == "allow", "CODEX_BUDGET_UNPRICED must be refuse or allow")
	check(c.BudgetReservationTTL > 0, "CODEX_BUDGET_RESERVATION_TTL must be positive")
	check(c.BudgetFlush > 0, "CODEX_BUDGET_FLUSH must be positive")
	check(c.CacheTTL > 0, "CODEX_CACHE_TTL must be positive")
	check(c.CacheMaxTTL >= c.CacheTTL, "CODEX_CACHE_MAX_TTL must be at least CODEX_CACHE_TTL")
	check(c.CacheMaxEntryBytes > 0, "CODEX_CACHE_MAX_ENTRY_BYTES must be positive")
	check(c.CacheBudgetBytes > 0, "CODEX_CACHE_BUDGET_BYTES must be positive")
	// Parsed as the configuration loaded; this checks one built in code.
	for id, o := range c.CacheOverrides {
		check(id != "" && o.TTL >= 0, "CODEX_CACHE_OVERRIDES: %q=%+v is not an id with a setting", id, o)
	}
	check(c.DEKMaxSeals > 0 && c.DEKMaxSeals <= keyring.DefaultMaxSeals, "CODEX_DEK_MAX_SEALS must be between 1 and %d", int64(keyring.DefaultMaxSeals))
	check(c.DEKMaxAge > 0, "CODEX_DEK_MAX_AGE must be positive")
	for _, e := range c.APIKeyEnvDenyList() {
		name := strings.TrimSuffix(e, "*")
		ok := name != "" && !strings.ContainsAny(name, "*")
		for i := 0; ok && i < len(name); i++ {
			ch := name[i]
			ok = 'a' <= ch && ch <= 'z' || 'A' <= ch && ch <= 'Z' || '0' <= ch && ch <= '9' || ch == '_'
		}
		check(ok, "CODEX_API_KEY_ENV_DENY: %q is not a variable name or a prefix ending in '*'", e)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("CODEX_LOG_LEVEL: %q is not debug, info, warn or error", c.LogLevel))
	}
	return errors.Join(errs...)
}

// IsLoopback reports whether a listen address binds only loopback
// interfaces, where plain HTTP is allowed for local development.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// CacheOverride is the cache setting of one org or key.
type CacheOverride struct {
	Enabled bool
	TTL     time.Duration // 0: the default
}

// CacheOverrides are the cache settings of orgs and keys, by id.
type CacheOverrides map[string]CacheOverride

// For returns the setting of a key of an org: the key's own, else its
// org's; ok is false when neither has one.
func (o CacheOverrides) For(orgID, keyID string) (v CacheOverride, ok bool) {
	if v, ok = o[keyID]; ok {
		return v, true
	}
	v, ok = o[orgID]
	return v, ok
}

// UnmarshalText parses the environment variable's form (see
// ParseCacheOverrides).
func (o *CacheOverrides) UnmarshalText(b []byte) error {
	m, err := ParseCacheOverrides(string(b))
	if err != nil {
		return err
	}
	*o = m
	return nil
}

// UnmarshalYAML parses the YAML file's form, the same string as the
// environment variable's.
func (o *CacheOverrides) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: cache_overrides: %w", n.Line, err)
	}
	if err := o.UnmarshalText([]byte(s)); err != nil {
		return fmt.Errorf("line %d: cache_overrides: %w", n.Line, err)
	}
	return nil
}

// MarshalText writes the overrides in the form ParseCacheOverrides reads,
// ordered by id.
func (o CacheOverrides) MarshalText() ([]byte, error) {
	var b []byte
	for _, id := range slices.Sorted(maps.Keys(o)) {
		v := o[id]
		if len(b) > 0 {
			b = append(b, "; "...)
		}
		b = append(b, id+"="...)
		if v.Enabled {
			b = append(b, "on"...)
		} else {
			b = append(b, "off"...)
		}
		if v.TTL > 0 {
			b = append(b, ",ttl="+v.TTL.String()...)
		}
	}
	return b, nil
}

// ParseCacheOverrides reads "id=setting[,setting]; ..." where id is an org
// id or a key id and each setting is on, off or ttl=<duration>:
//
//	org_123=off; key_456=on,ttl=10m
func ParseCacheOverrides(s string) (CacheOverrides, error) {
	out := CacheOverrides{}
	for _, item := range strings.Split(s, ";") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		id, settings, ok := strings.Cut(item, "=")
		id = strings.TrimSpace(id)
		if !ok || id == "" {
			return nil, fmt.Errorf("%q is not id=setting", item)
		}
		o := CacheOverride{Enabled: true}
		for _, st := range strings.Split(settings, ",") {
			st = strings.TrimSpace(st)
			switch {
			case st == "on":
				o.Enabled = true
			case st == "off":
				o.Enabled = false
			case strings.HasPrefix(st, "ttl="):
				d, err := time.ParseDuration(st[4:])
				if err != nil || d <= 0 {
					return nil, fmt.Errorf("%q: ttl is not a positive duration", item)
				}
				o.TTL = d
			default:
				return nil, fmt.Errorf("%q: setting %q is not on, off or ttl=<duration>", item, st)
			}
		}
		out[id] = o
	}
	return out, nil
}

// ParseTrustedProxies reads a comma-separated list of CIDRs or addresses
// (an address stands for itself alone): "10.0.0.0/16, 192.0.2.7".
func ParseTrustedProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if p, err := netip.ParsePrefix(item); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(item)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR or an IP address", item)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// ParseDimensions parses CODEX_TELEMETRY_DIMENSIONS: nil for all
// dimensions (empty), none for "none".
func ParseDimensions(s string) ([]string, error) {
	s = strings.TrimSpace(s)
	switch s {
	case "":
		return nil, nil
	case "none":
		return []string{}, nil
	}
	out := []string{}
	for _, d := range strings.Split(s, ",") {
		d = strings.TrimSpace(d)
		if !slices.Contains(wire.Dimensions, d) {
			return nil, fmt.Errorf("unknown dimension %q (want a comma-separated subset of %s, or none)", d, strings.Join(wire.Dimensions, ", "))
		}
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out, nil
}

// TelemetryMinimize returns the metadata minimization settings.
func (c Config) TelemetryMinimize() telemetry.Minimize {
	dims, _ := ParseDimensions(c.TelemetryDimensions) // checked by Validate
	return telemetry.Minimize{Dimensions: dims, MinCount: c.TelemetryMinCount, Heartbeat: c.TelemetryHeartbeat}
}

// DefaultRetention is how long request metadata is kept unless
// CODEX_RETENTION says otherwise: 90 days.
const DefaultRetention = 90 * 24 * time.Hour
