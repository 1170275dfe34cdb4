// Package server assembles a running codex-edge from its configuration:
// store, key directory, metadata writer, proxy, the client-facing listener
// (TLS 1.3 only, or plain HTTP on loopback) and the admin listener.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	goredis "github.com/redis/go-redis/v9"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/audit"
	"github.com/persiv/codex/edge/budget"
	budgetredis "github.com/persiv/codex/edge/budget/redis"
	"github.com/persiv/codex/edge/cache"
	"github.com/persiv/codex/edge/cache/memory"
	cacheredis "github.com/persiv/codex/edge/cache/redis"
	"github.com/persiv/codex/edge/caching"
	"github.com/persiv/codex/edge/config"
	"github.com/persiv/codex/edge/directory"
	"github.com/persiv/codex/edge/keyring"
	"github.com/persiv/codex/edge/keyring/kek"
	"github.com/persiv/codex/edge/metadata"
	"github.com/persiv/codex/edge/pipeline"
	"github.com/persiv/codex/edge/pricing"
	"github.com/persiv/codex/edge/proxy"
	"github.com/persiv/codex/edge/ratelimit"
	ratelimitredis "github.com/persiv/codex/edge/ratelimit/redis"
	"github.com/persiv/codex/edge/settings"
	"github.com/persiv/codex/edge/telemetry"
)

// HSTS is sent on every response of both listeners.
const HSTS = "max-age=31536000; includeSubDomains"

// Limits of the client-facing listener beside its configured timeouts
// (CODEX_CLIENT_HEADER_TIMEOUT, CODEX_CLIENT_READ_TIMEOUT).
const (
	// ClientIdleTimeout closes a keep-alive connection that has carried no
	// request for this long.
	ClientIdleTimeout = 2 * time.Minute
	// ClientMaxHeaderBytes bounds a request's headers.
	ClientMaxHeaderBytes = 1 << 20
)

// Store is what the edge persists: its own records, the audit log and the
// keyring's wrapped data keys.
type Store interface {
	edge.Store
	edge.AuditStore
	keyring.Store
}

// OpenKeyring builds the keyring over store with the master key CODEX_KEK
// names and, when store lists them (OrgMasterKeys), the orgs' own master
// keys (DESIGN §11): an org with one has its data keys wrapped by it, every
// other org by CODEX_KEK. It makes no master-key call: a disabled KMS key
// or a missing BYOK version makes content unreadable, never the edge
// unable to start. Start runs the keyring's Watch, so that a KMS key
// revoked while the edge runs takes effect within
// keyring.DefaultProbeInterval.
func OpenKeyring(ctx context.Context, cfg config.Config, store keyring.Store, getenv func(string) string, log *slog.Logger) (*keyring.Keyring, error) {
	kr, _, err := openKeyring(ctx, cfg, store, getenv, log, nil)
	return kr, err
}

// OpenKeyringOrgs is OpenKeyring that also returns the orgs' own master
// keys (nil when store does not list them), for the CLI's crypto commands.
func OpenKeyringOrgs(ctx context.Context, cfg config.Config, store keyring.Store, getenv func(string) string, log *slog.Logger) (*keyring.Keyring, *kek.OrgKeys, error) {
	return openKeyring(ctx, cfg, store, getenv, log, nil)
}

// orgMasterLister is the part of a store that lists the orgs' own master
// keys.
type orgMasterLister interface {
	OrgMasterKeys(ctx context.Context) (map[string]string, error)
}

// openKeyring is OpenKeyring that also returns the orgs' own master keys
// (nil when store does not list them), for reloading on a change.
// onPurge is keyring.Options.OnPurge (nil: none).
func openKeyring(ctx context.Context, cfg config.Config, store keyring.Store, getenv func(string) string, log *slog.Logger, onPurge func([]string)) (*keyring.Keyring, *kek.OrgKeys, error) {
	spec, err := kek.Parse(cfg.KEK)
	if err != nil {
		return nil, nil, err
	}
	master, warning, err := kek.Open(ctx, spec, getenv, cfg.DataDir)
	if err != nil {
		return nil, nil, fmt.Errorf("master key (CODEX_KEK=%s): %w", spec.Kind, err)
	}
	if warning != "" {
		log.Warn(warning)
	}
	o := keyring.Options{Store: store, Master: master, Logger: log, MaxSeals: cfg.DEKMaxSeals, MaxAge: cfg.DEKMaxAge, OnPurge: onPurge}
	var orgs *kek.OrgKeys
	if l, ok := store.(orgMasterLister); ok {
		orgs = kek.NewOrgKeys(l.OrgMasterKeys, nil)
		if _, err := orgs.Load(ctx); err != nil {
			return nil, nil, err
		}
		o.OrgMaster, o.OrgMasters = orgs.Master, orgs.Masters
		o.ReloadOrgMasters = func(ctx context.Context) error {
			_, err := orgs.Load(ctx)
			return err
		}
	}
	kr, err := keyring.New(o)
	return kr, orgs, err
}

// Server is a configured edge, ready to Start.
type Server struct {
	cfg config.Config
	log *slog.Logger
	// draining is set once Drain began: answers close their connection
	// and /readyz reports the edge as going away.
	draining atomic.Bool
	store    Store
	keys     *keyring.Keyring
	// orgKeys: the orgs' own master keys, reloaded when an org changes.
	orgKeys *kek.OrgKeys
	// adminTokenSet: CODEX_ADMIN_TOKEN is set (required to send an org's
	// ephemeral key).
	adminTokenSet bool
	dir           *directory.Directory
	px            *proxy.Proxy
	writer        *metadata.Writer
	audit         *audit.Writer
	tel           *telemetry.Service
	reg           *prometheus.Registry
	cache         *cache.Cache
	// limits are the orgs' rate limits held in memory; redis is the
	// client limits and budgets share (nil without CODEX_REDIS_URL).
	limits *settings.Cache[*ratelimit.Set]
	redis  *goredis.Client
	// budgets are the orgs' budgets held in memory, ledger their live
	// reservations and spend, spend the settled spend on its way to the
	// store.
	budgets *settings.Cache[[]edge.Budget]
	ledger  budget.Ledger
	spend   *budget.Recorder

	adminAPI        *echo.Group // /admin/v1: token-protected
	main, admin     *http.Server
	mainLn, adminLn net.Listener
	cancel          context.CancelFunc
	done            chan struct{}
}

// orgChanged is told by the directory's change feed about an org whose
// settings changed: its own master key may have been set or cleared
// (`codex-edge orgs kek set`), so the list is re-read before the keyring
// re-reads the org's data keys.
func (s *Server) orgChanged(orgID string) {
	if s.orgKeys != nil {
		ctx, cancel := context.WithTimeout(context.Background(), orgKeysReloadTimeout)
		changed, err := s.orgKeys.Load(ctx)
		cancel()
		if err != nil {
			s.log.Warn("reload org master keys; keeping the previous list", "err", err)
		}
		for _, id := range changed {
			s.keys.Invalidate(id)
		}
	}
	s.keys.Invalidate(orgID)
}

// keysPurged drops what the key directory holds opened for orgs whose data
// keys the keyring dropped on a refused master key: their credentials and
// memories become unreadable here within the probe interval too. Called
// from the keyring's Watch, which Start runs after the directory exists.
func (s *Server) keysPurged(orgIDs []string) {
	for _, id := range slices.Compact(slices.Sorted(slices.Values(orgIDs))) {
		s.dir.ForgetOrg(id)
	}
}

// orgKeysReloadTimeout bounds one reload of the orgs' master key list (one
// store query) from the change feed.
const orgKeysReloadTimeout = 5 * time.Second

// Options carry what the configuration cannot: the environment (provider
// credentials are read from it) and, for tests, a transport to providers.
type Options struct {
	Getenv    func(string) string
	Transport http.RoundTripper
	// Telemetry, when set, adjusts the telemetry options (tests).
	Telemetry func(*telemetry.Options)
	// Enroll, when set, enrolls with the configured control plane; the
	// admin API calls it when sharing is switched on before enrollment
	// (see telemetry.Options.Enroll).
	Enroll func(context.Context) error
}

// New checks the listeners' transport security, opens the store and builds
// the request path. It does not listen yet.
func New(ctx context.Context, cfg config.Config, store Store, log *slog.Logger, opts Options) (*Server, error) {
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	tlsConf, err := tlsConfig(cfg)
	if err != nil {
		return nil, err
	}
	prices, err := pricing.Load(nil)
	if err != nil {
		return nil, fmt.Errorf("load shipped pricing table: %w", err)
	}
	formats := proxy.DefaultFormats()
	if cfg.PricingFile != "" {
		rr := make([]pricing.RateRequirer, len(formats))
		for i, f := range formats {
			rr[i] = f
		}
		if prices, err = pricing.LoadFile(cfg.PricingFile, rr...); err != nil {
			return nil, fmt.Errorf("CODEX_PRICING_FILE: %w", err)
		}
	}

	s := &Server{cfg: cfg, log: log, store: store, reg: prometheus.NewRegistry(), done: make(chan struct{})}
	s.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	if s.keys, s.orgKeys, err = openKeyring(ctx, cfg, store, opts.Getenv, log, s.keysPurged); err != nil {
		return nil, err
	}
	s.limits = settings.New(ratelimit.Load(store.Limits))
	s.budgets = settings.New(store.Budgets)
	s.spend = budget.NewRecorder(store, cfg.BudgetFlush, log)
	s.dir = directory.New(store, directory.Options{Keys: s.keys, Getenv: opts.Getenv, APIKeyEnvDeny: cfg.APIKeyEnvDenyList(), Logger: log,
		OrgChanged: s.orgChanged, Changed: s.settingsChanged})
	if err := s.dir.Sync(ctx); err != nil {
		return nil, err
	}
	batches := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "codex_edge_metadata_batch_seconds", Help: "Time to write one batch of request metadata.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 3, 10),
	})
	writeErrors := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "codex_edge_metadata_write_errors_total", Help: "Failed metadata batch writes (retried).",
	})
	s.writer = metadata.New(store, metadata.Options{
		Queue: cfg.MetadataQueue, Batch: cfg.MetadataBatch, Flush: cfg.MetadataFlush, Logger: log,
		Observe: func(n int, took time.Duration, err error) {
			batches.Observe(took.Seconds())
			if err != nil {
				writeErrors.Inc()
			}
		},
	})
	s.reg.MustRegister(batches, writeErrors,
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "codex_edge_keyring_unreadable_total", Help: "Records that failed to decrypt (shredded, revoked master key, tampered); treated as absent."},
			func() float64 { return float64(s.keys.Stats().Unreadable) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "codex_edge_keyring_master_key_calls_total", Help: "Calls to the master key (KMS or BYOK) to unwrap or generate data keys; in steady state only the background re-unwraps (codex_edge_keyring_data_key_refreshes_total)."},
			func() float64 { st := s.keys.Stats(); return float64(st.Unwraps + st.Generates) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "codex_edge_keyring_data_key_refreshes_total", Help: "Background re-unwraps of data keys in use, before their cache lifetime ends: ok, refused (the data key was dropped) or error (kept until it expires).",
			ConstLabels: prometheus.Labels{"result": "ok"}},
			func() float64 { return float64(s.keys.Stats().Refreshes) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "codex_edge_keyring_data_key_refreshes_total", Help: "Background re-unwraps of data keys in use, before their cache lifetime ends: ok, refused (the data key was dropped) or error (kept until it expires).",
			ConstLabels: prometheus.Labels{"result": "refused"}},
			func() float64 { return float64(s.keys.Stats().RefreshRefusals) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "codex_edge_keyring_data_key_refreshes_total", Help: "Background re-unwraps of data keys in use, before their cache lifetime ends: ok, refused (the data key was dropped) or error (kept until it expires).",
			ConstLabels: prometheus.Labels{"result": "error"}},
			func() float64 { return float64(s.keys.Stats().RefreshErrors) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "codex_edge_directory_org_refreshes_total", Help: "Background reloads of orgs' loaded state (credentials, memories) before it expires: ok or error (the state is served until it expires).",
			ConstLabels: prometheus.Labels{"result": "ok"}},
			func() float64 { return float64(s.dir.Stats().Refreshes) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "codex_edge_directory_org_refreshes_total", Help: "Background reloads of orgs' loaded state (credentials, memories) before it expires: ok or error (the state is served until it expires).",
			ConstLabels: prometheus.Labels{"result": "error"}},
			func() float64 { return float64(s.dir.Stats().RefreshFailures) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "codex_edge_keyring_master_key_probe_refusals_total", Help: "Master-key probes the provider refused (key disabled, deleted or access removed): cached data keys were dropped."},
			func() float64 { return float64(s.keys.Stats().ProbeRefusals) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "codex_edge_keyring_master_key_probe_errors_total", Help: "Master-key probes that could not tell (network, throttling); cached data keys were kept."},
			func() float64 { return float64(s.keys.Stats().ProbeErrors) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "codex_edge_keyring_automatic_rotations_total", Help: "New data key generations made because the active one reached CODEX_DEK_MAX_SEALS or CODEX_DEK_MAX_AGE.",
			ConstLabels: prometheus.Labels{"reason": "max_seals"}},
			func() float64 { return float64(s.keys.Stats().SealLimitRotations) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "codex_edge_keyring_automatic_rotations_total", Help: "New data key generations made because the active one reached CODEX_DEK_MAX_SEALS or CODEX_DEK_MAX_AGE.",
			ConstLabels: prometheus.Labels{"reason": "max_age"}},
			func() float64 { return float64(s.keys.Stats().AgeRotations) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "codex_edge_orgs_waiting_for_key", Help: "Orgs on byok-ephemeral whose key has not been sent since start-up (PUT /admin/v1/orgs/{org}/byok); their content is unreadable."},
			func() float64 {
				if s.orgKeys == nil {
					return 0
				}
				return float64(len(s.orgKeys.Waiting()))
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "codex_edge_metadata_queue_depth", Help: "Request metadata records waiting to be written."},
			func() float64 { return float64(s.writer.Depth()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "codex_edge_metadata_queue_capacity", Help: "Length of the metadata queue (CODEX_METADATA_QUEUE)."},
			func() float64 { return float64(s.writer.Capacity()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "codex_edge_metadata_dropped_total", Help: "Request metadata records dropped because the queue was full."},
			func() float64 { return float64(s.writer.Dropped()) }),
	)

	s.audit = audit.NewWriter(store, audit.WriterOptions{Queue: cfg.AuditQueue, Logger: log})
	s.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "codex_edge_audit_queue_depth", Help: "Audit events (levels none and hash) waiting to be written."},
			func() float64 { return float64(s.audit.Depth()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "codex_edge_audit_dropped_total", Help: "Audit events (levels none and hash) dropped because the queue was full."},
			func() float64 { return float64(s.audit.Dropped()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "codex_edge_audit_written_total", Help: "Audit events of levels none and hash written."},
			func() float64 { return float64(s.audit.Written()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "codex_edge_audit_committed_total", Help: "Audit events of level full stored before their answer completed."},
			func() float64 { return float64(s.audit.Committed()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "codex_edge_audit_commit_transactions_total", Help: "Transactions that stored audit events of level full; the requests waiting at the same moment share one."},
			func() float64 { return float64(s.audit.CommitBatches()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "codex_edge_audit_commit_failures_total", Help: "Audit events of level full that could not be stored; their requests were answered 503 audit_unavailable."},
			func() float64 { return float64(s.audit.CommitFailures()) }),
	)

	if s.tel, err = openTelemetry(ctx, cfg, store, opts, log, s.telemetryBudgets); err != nil {
		return nil, err
	}
	s.reg.MustRegister(s.tel.Collectors()...)
	cacheOpts, err := s.openCache(cfg)
	if err != nil {
		return nil, err
	}

	trusted, err := config.ParseTrustedProxies(cfg.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("CODEX_TRUSTED_PROXIES: %w", err)
	}
	metrics := pipeline.NewMetrics(s.reg, func(p edge.Provider, model string) bool {
		_, _, ok := prices.Lookup(p, model)
		return ok
	})
	px := proxy.New(s.dir, telemetry.Fanout{s.writer, s.tel}, prices, proxy.Options{
		Formats:        formats,
		Cache:          cacheOpts,
		ConnectTimeout: cfg.UpstreamConnectTimeout,
		HeaderTimeout:  cfg.UpstreamHeaderTimeout,
		IdleTimeout:    cfg.UpstreamIdleTimeout,
		MaxBodyBytes:   cfg.MaxBodyBytes,
		// The proxy sets its own read deadline for the body, replacing
		// the server's: it must never be later than the read timeout.
		BodyTimeout:          min(cfg.BodyTimeout, cfg.ClientReadTimeout),
		MaxInflightBodyBytes: cfg.MaxInflightBodyBytes,
		AuthFailureLimit:     cfg.AuthFailureLimit,
		AuthFailureWindow:    cfg.AuthFailureWindow,
		AuthFailureClients:   cfg.AuthFailureClients,
		TrustedProxies:       trusted,
		Audit:                audit.Options{Writer: s.audit, Keys: s.keys, MaxContentBytes: cfg.AuditMaxBytes},
		Transport:            opts.Transport,
		Logger:               log,
		Metrics:              metrics,
		RateLimit:            ratelimit.Options{Limits: s.limits.Get, Counter: s.rateCounter(metrics)},
		Budget: budget.Options{Budgets: s.budgets.Get, Ledger: s.budgetLedger(cfg, metrics), Prices: prices, Spend: s.spend,
			AllowUnpriced: cfg.BudgetUnpriced == "allow"},
	})

	e := newEcho()
	e.Use(func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if s.draining.Load() {
				// net/http closes the connection after this answer.
				c.Response().Header().Set("Connection", "close")
			}
			return next(c)
		}
	})
	e.GET("/healthz", func(c echo.Context) error { return c.JSON(200, map[string]string{"status": "ok"}) })
	e.GET("/readyz", s.readyz)
	px.Register(e)
	s.px = px
	s.main = &http.Server{
		Handler:           e,
		TLSConfig:         tlsConf,
		ReadHeaderTimeout: cfg.ClientHeaderTimeout,
		// The whole request, body included; no WriteTimeout, since answers
		// stream for long. Once the body is read the server clears the
		// read deadline, so a stream is never cut by it.
		ReadTimeout:    cfg.ClientReadTimeout,
		IdleTimeout:    ClientIdleTimeout,
		MaxHeaderBytes: ClientMaxHeaderBytes,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	token, err := adminToken(cfg, opts.Getenv)
	if err != nil {
		return nil, err
	}
	s.adminTokenSet = len(token) > 0
	a := newEcho()
	a.HTTPErrorHandler = s.adminError
	a.Use(guardAdmin(token))
	authed := requireToken(token)
	s.adminAPI = a.Group("/admin/v1", authed)
	s.adminAPI.POST("/keys/:id/revoke", s.revokeKey)
	s.registerMemories(s.adminAPI)
	s.registerGovernance(s.adminAPI)
	s.adminAPI.PUT("/orgs/:org/byok", s.putBYOK)
	s.adminAPI.GET("/crypto/status", s.cryptoStatus)
	// Health stays open: load balancers and orchestrators probe it without
	// the token, and it says nothing but ok.
	a.GET("/healthz", func(c echo.Context) error { return c.JSON(200, map[string]string{"status": "ok"}) })
	a.GET("/readyz", s.readyz)
	a.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{})), authed)
	s.tel.RegisterAdmin(s.adminAPI.Group("/telemetry", s.auditSharing))
	s.registerAudit(s.adminAPI)
	if cfg.Pprof {
		a.GET("/debug/pprof/*", echo.WrapHandler(http.HandlerFunc(pprof.Index)), authed)
		a.GET("/debug/pprof/profile", echo.WrapHandler(http.HandlerFunc(pprof.Profile)), authed)
		a.GET("/debug/pprof/trace", echo.WrapHandler(http.HandlerFunc(pprof.Trace)), authed)
	}
	s.admin = &http.Server{
		Handler:           a,
		TLSConfig:         tlsConf,
		ReadHeaderTimeout: AdminReadHeaderTimeout,
		ReadTimeout:       cfg.ClientReadTimeout,
		IdleTimeout:       AdminIdleTimeout,
		MaxHeaderBytes:    AdminMaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return s, nil
}

// sharedTelemetry is a store that keeps the hybrid link's state for every
// replica of a deployment (the Postgres store).
type sharedTelemetry interface {
	SharedTelemetry(maxBatches int, maxBytes int64, lease time.Duration) (telemetry.State, keyring.Store)
}

// TelemetryState returns where the hybrid link's state lives, and the key
// store its secrets are sealed in: in the database when store keeps it
// (Postgres: every replica shares one enrollment, sequence, spool and
// ledger), else the files in CODEX_DATA_DIR/telemetry (SQLite, one
// instance), whose secrets are sealed under telemetry.KeyOrg in a key
// store of their own (telemetry.KeyStore). store may be nil (files).
func TelemetryState(cfg config.Config, store any) (telemetry.State, keyring.Store, error) {
	if s, ok := store.(sharedTelemetry); ok {
		st, ks := s.SharedTelemetry(cfg.TelemetrySpoolMaxBatches, cfg.TelemetrySpoolMaxBytes, cfg.TelemetrySpoolLease)
		return st, ks, nil
	}
	d := telemetry.DirIn(cfg.DataDir)
	f, err := telemetry.OpenFiles(d, cfg.TelemetrySpoolMaxBatches, cfg.TelemetrySpoolMaxBytes)
	if err != nil {
		return nil, nil, err
	}
	ks, err := telemetry.OpenKeyStore(d.KeyStorePath())
	if err != nil {
		return nil, nil, err
	}
	return f, ks, nil
}

// openTelemetry opens the hybrid link's state (TelemetryState), with the
// same master key as the tenants'.
func openTelemetry(ctx context.Context, cfg config.Config, store Store, opts Options, log *slog.Logger, budgets func(context.Context) []telemetry.Budget) (*telemetry.Service, error) {
	st, ks, err := TelemetryState(cfg, store)
	if err != nil {
		return nil, err
	}
	// The master key's warnings were logged once already.
	kr, err := OpenKeyring(ctx, cfg, ks, opts.Getenv, slog.New(errorsOnly{log.Handler()}))
	if err != nil {
		return nil, err
	}
	to := telemetry.Options{
		State: st, Dir: telemetry.DirIn(cfg.DataDir), Keyring: kr, Window: cfg.TelemetryWindow, Queue: cfg.TelemetryQueue,
		SpoolMaxBatches: cfg.TelemetrySpoolMaxBatches, SpoolMaxBytes: cfg.TelemetrySpoolMaxBytes, Logger: log,
		Pins: cfg.ControlplanePins, Enroll: noteEnrolled(opts.Enroll), Minimize: cfg.TelemetryMinimize(),
		Budgets: budgets,
	}
	if cfg.TelemetryNames {
		to.Names = &telemetry.Names{
			OrgName: func(ctx context.Context, id string) (string, error) { o, err := store.Org(ctx, id); return o.Name, err },
			KeyName: func(ctx context.Context, id string) (string, error) {
				k, err := store.KeyByID(ctx, id)
				return k.Name, err
			},
		}
	}
	if opts.Telemetry != nil {
		opts.Telemetry(&to)
	}
	return telemetry.Open(to)
}

// errorsOnly passes on errors only.
type errorsOnly struct{ slog.Handler }

func (h errorsOnly) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelError && h.Handler.Enabled(ctx, l)
}

func (h errorsOnly) WithAttrs(as []slog.Attr) slog.Handler {
	return errorsOnly{h.Handler.WithAttrs(as)}
}

func (h errorsOnly) WithGroup(name string) slog.Handler { return errorsOnly{h.Handler.WithGroup(name)} }

// Telemetry exposes the hybrid link (for tests).
func (s *Server) Telemetry() *telemetry.Service { return s.tel }

// openCache builds the response cache: Redis when CODEX_REDIS_URL is set,
// else in-process, with per-org and per-key overrides.
func (s *Server) openCache(cfg config.Config) (caching.Options, error) {
	var (
		b   cache.Backend
		err error
	)
	if cfg.RedisURL != "" {
		rb, err := cacheredis.Open(cfg.RedisURL, cacheredis.Options{})
		if err != nil {
			return caching.Options{}, err
		}
		// Rate limits and budgets count on the cache's client: one pool
		// of connections to the one server, closed with the cache.
		b, s.redis = rb, rb.Client()
	} else if b, err = memory.New(cfg.CacheBudgetBytes); err != nil {
		return caching.Options{}, err
	}
	s.cache = cache.New(b, s.keys, cache.Options{Registerer: s.reg})
	o := caching.Options{Cache: s.cache, Enabled: cfg.CacheEnabled, TTL: cfg.CacheTTL, MaxTTL: cfg.CacheMaxTTL, MaxEntryBytes: cfg.CacheMaxEntryBytes}
	if overrides := cfg.CacheOverrides; len(overrides) > 0 {
		o.Policy = func(orgID, keyID string) caching.Policy {
			if v, ok := overrides.For(orgID, keyID); ok {
				return caching.Policy{Enabled: v.Enabled, TTL: v.TTL}
			}
			return caching.Policy{Enabled: cfg.CacheEnabled}
		}
	}
	return o, nil
}

func newEcho() *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.Use(middleware.Recover())
	e.Use(func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			c.Response().Header().Set("Strict-Transport-Security", HSTS)
			return next(c)
		}
	})
	return e
}

// AdminAPI is the token-protected /admin/v1 route group, for the parts
// that add admin endpoints.
func (s *Server) AdminAPI() *echo.Group { return s.adminAPI }

// tlsConfig enforces DESIGN §3: TLS 1.3 only; plain HTTP only on loopback.
func tlsConfig(cfg config.Config) (*tls.Config, error) {
	if cfg.TLSCert == "" {
		for _, a := range []struct{ name, addr string }{{"CODEX_LISTEN", cfg.Listen}, {"CODEX_ADMIN_LISTEN", cfg.AdminListen}} {
			if !config.IsLoopback(a.addr) {
				return nil, fmt.Errorf("%s=%s is not a loopback address: plain HTTP is refused there; set CODEX_TLS_CERT and CODEX_TLS_KEY, or listen on 127.0.0.1", a.name, a.addr)
			}
		}
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("load CODEX_TLS_CERT/CODEX_TLS_KEY: %w", err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}}, nil
}

func (s *Server) readyz(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
	defer cancel()
	checks := map[string]string{"store": "ok", "metadata_writer": "ok", "audit_writer": "ok"}
	status := http.StatusOK
	if s.draining.Load() {
		checks["shutdown"], status = "draining", http.StatusServiceUnavailable
	}
	if err := s.store.Ping(ctx); err != nil {
		checks["store"], status = "unreachable", http.StatusServiceUnavailable
	}
	if !s.writer.Healthy() {
		checks["metadata_writer"], status = "failing", http.StatusServiceUnavailable
	}
	if !s.audit.Healthy() {
		checks["audit_writer"], status = "failing", http.StatusServiceUnavailable
	}
	// Orgs waiting for their ephemeral BYOK key do not make the edge
	// unready (every other org is served); readyz names them.
	if s.orgKeys != nil {
		if w := s.orgKeys.Waiting(); len(w) > 0 {
			checks["orgs_waiting_for_key"] = strings.Join(w, ",")
		}
	}
	return c.JSON(status, checks)
}

// Start listens on both addresses and serves in the background.
func (s *Server) Start(ctx context.Context) error {
	var err error
	if s.mainLn, err = listen(s.cfg.Listen, s.main.TLSConfig); err != nil {
		return fmt.Errorf("listen on CODEX_LISTEN: %w", err)
	}
	if s.adminLn, err = listen(s.cfg.AdminListen, s.admin.TLSConfig); err != nil {
		_ = s.mainLn.Close() // the admin listener's error is the one to report
		return fmt.Errorf("listen on CODEX_ADMIN_LISTEN: %w", err)
	}
	// Read before serving: Serve configures HTTP/2 on the TLS config.
	scheme := "http"
	if s.main.TLSConfig != nil {
		scheme = "https"
	}
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	s.tel.Start(bg)
	go func() {
		defer close(s.done)
		// A KMS master key revoked out of band stops the cached data keys
		// within the probe interval (returns at once for local and byok).
		var wg sync.WaitGroup
		wg.Go(func() { s.keys.Watch(bg) })
		// Data keys in use are re-unwrapped before their cache lifetime
		// ends, so no request waits for the master key.
		wg.Go(func() { s.keys.Refresh(bg) })
		wg.Go(func() { s.spend.Run(bg) })
		wg.Go(func() { audit.RunRetention(bg, s.store, s.cfg.AuditRetention, s.log) })
		wg.Go(func() { s.retain(bg) })
		s.followChanges(bg)
		wg.Wait()
	}()
	for _, p := range []struct {
		srv *http.Server
		ln  net.Listener
	}{{s.main, s.mainLn}, {s.admin, s.adminLn}} {
		go func() {
			if err := p.srv.Serve(p.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("listener stopped", "addr", p.ln.Addr().String(), "err", err)
			}
		}()
	}
	s.log.Info("codex-edge serving", "url", scheme+"://"+s.mainLn.Addr().String(), "admin", scheme+"://"+s.adminLn.Addr().String())
	return nil
}

// changeNotifier is a store that signals new change-feed entries (Postgres
// LISTEN/NOTIFY), so other instances' changes apply at once rather than at
// the next poll.
type changeNotifier interface {
	ChangeNotify() <-chan struct{}
}

// Retention's pace: at most RetentionBatch records per statement, and a
// pass over every org at start-up and every RetentionEvery. On Postgres
// each pass also makes sure the monthly partitions of request metadata
// exist from the current month through RetentionPartitionsAhead months
// ahead.
const (
	RetentionBatch           = 5000
	RetentionEvery           = time.Hour
	RetentionPartitionsAhead = 2
)

// partitionedRequests is a store that keeps request metadata in monthly
// partitions (Postgres): retention drops a month whole once all of it is
// past CODEX_RETENTION, and creates the coming months' partitions.
type partitionedRequests interface {
	EnsureRequestPartitions(ctx context.Context, now time.Time, months int) ([]string, error)
	DropRequestPartitions(ctx context.Context, before time.Time) ([]string, error)
}

// retain deletes request metadata older than CODEX_RETENTION until ctx
// ends.
func (s *Server) retain(ctx context.Context) {
	tick := time.NewTicker(RetentionEvery)
	defer tick.Stop()
	for {
		if n, err := s.Prune(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log.Error("request metadata retention", "err", err)
		} else if n > 0 {
			s.log.Info("request metadata past retention deleted", "records", n, "retention", s.cfg.Retention.String())
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Prune deletes every org's request metadata older than CODEX_RETENTION
// and returns how many records it deleted one by one. On Postgres it first
// drops, whole, the monthly partitions entirely past retention (their
// records are not counted) and creates the partitions of the months ahead;
// what is left past retention is deleted RetentionBatch records at a time.
func (s *Server) Prune(ctx context.Context) (int64, error) {
	now := time.Now()
	before := now.Add(-s.cfg.Retention)
	if p, ok := s.store.(partitionedRequests); ok {
		created, err := p.EnsureRequestPartitions(ctx, now, RetentionPartitionsAhead)
		if err != nil {
			return 0, fmt.Errorf("retention: %w", err)
		}
		if len(created) > 0 {
			s.log.Info("request metadata partitions created", "partitions", created)
		}
		dropped, err := p.DropRequestPartitions(ctx, before)
		if err != nil {
			return 0, fmt.Errorf("retention: %w", err)
		}
		if len(dropped) > 0 {
			s.log.Info("request metadata partitions past retention dropped", "partitions", dropped, "retention", s.cfg.Retention.String())
		}
	}
	orgs, err := s.store.Orgs(ctx)
	if err != nil {
		return 0, fmt.Errorf("retention: %w", err)
	}
	var total int64
	for _, o := range orgs {
		for {
			n, err := s.store.DeleteRequestsBefore(ctx, o.ID, before, RetentionBatch)
			total += n
			if err != nil {
				return total, fmt.Errorf("retention of org %s: %w", o.ID, err)
			}
			if n < RetentionBatch {
				break
			}
		}
	}
	return total, nil
}

// followChanges keeps the directory in step with the change feed: every
// CODEX_CHANGE_POLL, and at once when the store signals a change.
func (s *Server) followChanges(ctx context.Context) {
	var notified <-chan struct{}
	if n, ok := s.store.(changeNotifier); ok {
		notified = n.ChangeNotify()
	}
	s.dir.Run(ctx, s.cfg.ChangePoll, notified)
}

func listen(addr string, tc *tls.Config) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	if tc != nil {
		ln = tls.NewListener(ln, tc)
	}
	return ln, nil
}

// Addr is the client-facing address actually bound.
func (s *Server) Addr() string { return s.mainLn.Addr().String() }

// AdminAddr is the admin address actually bound.
func (s *Server) AdminAddr() string { return s.adminLn.Addr().String() }

// Keyring exposes the keyring (for the admin API and tests).
func (s *Server) Keyring() *keyring.Keyring { return s.keys }

// Cache exposes the response cache (for tests).
func (s *Server) Cache() *cache.Cache { return s.cache }

// Busy returns how many client requests are being handled, including the
// stages' work after a JSON answer has reached its client.
func (s *Server) Busy() int64 {
	if s.px == nil {
		return 0
	}
	return s.px.Busy()
}

// Directory exposes the key directory (for the admin API and tests).
func (s *Server) Directory() *directory.Directory { return s.dir }

// Drain is the first step of stopping: for d (or until ctx ends) the edge
// serves as before, but /readyz answers 503 and every answer closes its
// connection, so that load balancers stop sending and clients open their
// next connection elsewhere. Without it, Shutdown would close kept-alive
// connections while a client may be sending a request on one: a POST
// lost that way is retried by no client.
func (s *Server) Drain(ctx context.Context, d time.Duration) {
	s.draining.Store(true)
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// Shutdown stops accepting requests, lets running ones finish until ctx
// ends, then writes the queued metadata and audit events.
func (s *Server) Shutdown(ctx context.Context) error {
	errs := []error{s.main.Shutdown(ctx), s.admin.Shutdown(ctx)}
	if s.cancel != nil {
		s.cancel()
		<-s.done
	}
	s.tel.Close()
	errs = append(errs, s.writer.Close(ctx), s.audit.Close(ctx))
	if s.cache != nil {
		errs = append(errs, s.cache.Close())
	}
	return errors.Join(errs...)
}

// rateCounter is where rate limits count: Redis, shared by every instance,
// with this instance's own counters while Redis cannot be reached; or only
// this instance's.
func (s *Server) rateCounter(m *pipeline.Metrics) ratelimit.Counter {
	local := ratelimit.NewLocal()
	if s.redis == nil {
		return local
	}
	return &ratelimit.Fallback{Primary: ratelimitredis.New(s.redis), Local: local, Logger: s.log, Metrics: m}
}

// settingsChanged drops the settings a change-feed entry changed, so the
// next request of the org reads them again.
func (s *Server) settingsChanged(c edge.Change) {
	switch c.Kind {
	case "limit":
		s.limits.Forget(c.OrgID)
	case "budget":
		s.budgets.Forget(c.OrgID)
	case "org":
		s.limits.Forget(c.OrgID)
		s.budgets.Forget(c.OrgID)
	case "dek":
		// DeleteDEKs records a shred as ("dek", "*"). Replayed at start-up
		// too, before the cache exists: nothing to remove then.
		if c.Ref == "*" {
			s.shredded(c.OrgID)
		}
	}
}

// budgetLedger is where budgets reserve: Redis, shared by every instance,
// with this instance's own ledger while Redis cannot be reached; or only
// this instance's.
func (s *Server) budgetLedger(cfg config.Config, m *pipeline.Metrics) budget.Ledger {
	local := budget.NewLocal(s.spend.Seed, cfg.BudgetReservationTTL)
	if s.redis == nil {
		s.ledger = local
	} else {
		s.ledger = &budget.Fallback{Primary: budgetredis.New(s.redis, s.spend.Seed, cfg.BudgetReservationTTL), Local: local, Logger: s.log, Metrics: m}
	}
	return s.ledger
}

// Ledger exposes the budgets' ledger (for tests).
func (s *Server) Ledger() budget.Ledger { return s.ledger }

// telemetryBudgets lists every budget and its use in the current period,
// for shared metrics (read only while sharing is on, once a window).
func (s *Server) telemetryBudgets(ctx context.Context) []telemetry.Budget {
	if s.ledger == nil {
		return nil
	}
	orgs, err := s.store.Orgs(ctx)
	if err != nil {
		s.log.Warn("telemetry: budgets not listed", "err", err)
		return nil
	}
	now := time.Now()
	var out []telemetry.Budget
	for _, o := range orgs {
		bs, err := s.budgets.Get(ctx, o.ID)
		if err != nil {
			s.log.Warn("telemetry: budgets not listed", "org", o.ID, "err", err)
			continue
		}
		for _, b := range bs {
			start := b.Period.Start(now)
			spent, _, err := s.ledger.Use(ctx, budget.Bucket{OrgID: b.OrgID, KeyID: b.KeyID, Period: b.Period, Start: start, Cap: b.CapNanoUSD})
			if err != nil {
				continue
			}
			out = append(out, telemetry.Budget{OrgID: b.OrgID, KeyID: b.KeyID, Period: string(b.Period), CapNanoUSD: b.CapNanoUSD, SpentNanoUSD: spent})
		}
	}
	return out
}
