// Command codex-edge is the persīv codex gateway run inside the customer's
// network. `codex-edge serve` runs it; the other subcommands manage orgs,
// gateway keys and provider settings in the same data directory or
// database that serve uses.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/apikey"
	"github.com/persiv/codex/edge/config"
	"github.com/persiv/codex/edge/keyring"
	"github.com/persiv/codex/edge/server"
	"github.com/persiv/codex/edge/store/postgres"
	"github.com/persiv/codex/edge/store/sqlite"
)

const usageText = `codex-edge: the persīv codex gateway

Usage:
  codex-edge serve [--config edge.yaml]
  codex-edge migrate
  codex-edge orgs create NAME
  codex-edge orgs list [--json]
  codex-edge keys create --org ORG --name NAME [--json]
  codex-edge keys list --org ORG [--json]
  codex-edge keys revoke ID_OR_KEY
  codex-edge providers set --org ORG openai|anthropic (--api-key-env VAR | --api-key-stdin) [--base-url URL [--allow-insecure-http]]
  codex-edge providers list --org ORG [--json]
  codex-edge crypto status [--org ORG] [--json]
  codex-edge crypto rotate --org ORG
  codex-edge crypto rewrap
  codex-edge crypto shred --org ORG --yes
  codex-edge telemetry enroll --url URL --token TOKEN [--name NAME]
  codex-edge telemetry on|off|status|ledger [--json]

Every subcommand takes --config FILE (or CODEX_CONFIG) and reads CODEX_*
variables, so it acts on the same data directory or database as serve.
ORG is an org id or name.

Postgres (CODEX_DATABASE_URL): run "codex-edge migrate" with the owner
role's URL (in CODEX_DATABASE_URL or CODEX_DATABASE_OWNER_URL); it grants
CODEX_DATABASE_APP_ROLE (default codex_app) the access serve needs. serve
connects as that role and refuses a superuser, BYPASSRLS or table-owning
role and an unmigrated schema. With CODEX_DATABASE_MIGRATE=true and
CODEX_DATABASE_OWNER_URL set, serve migrates at start-up first.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv))
}

// env is what a subcommand runs with; tests build one directly.
type env struct {
	ctx    context.Context
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	e := &env{ctx: ctx, stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, usageText)
		return 0
	}
	cmd, rest := args[0], args[1:]
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		switch cmd {
		case "orgs", "keys", "providers", "crypto", "telemetry":
			cmd, rest = cmd+" "+rest[0], rest[1:]
		}
	}
	var err error
	switch cmd {
	case "serve":
		err = e.serve(rest)
	case "migrate":
		err = e.migrate(rest)
	case "orgs create":
		err = e.orgsCreate(rest)
	case "orgs list":
		err = e.orgsList(rest)
	case "keys create":
		err = e.keysCreate(rest)
	case "keys list":
		err = e.keysList(rest)
	case "keys revoke":
		err = e.keysRevoke(rest)
	case "providers set":
		err = e.providersSet(rest)
	case "providers list":
		err = e.providersList(rest)
	case "crypto status":
		err = e.cryptoStatus(rest)
	case "crypto rotate":
		err = e.cryptoRotate(rest)
	case "crypto rewrap":
		err = e.cryptoRewrap(rest)
	case "crypto shred":
		err = e.cryptoShred(rest)
	case "telemetry enroll":
		err = e.telemetryEnroll(rest)
	case "telemetry on", "telemetry off":
		err = e.telemetrySet(cmd == "telemetry on")(rest)
	case "telemetry status":
		err = e.telemetryStatus(rest)
	case "telemetry ledger":
		err = e.telemetryLedger(rest)
	default:
		fmt.Fprintf(stderr, "codex-edge: unknown command %q\n\n%s", strings.Join(args[:min(2, len(args))], " "), usageText)
		return 2
	}
	if err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "codex-edge %s: %v\n\n%s", cmd, err, usageText)
			return 2
		}
		fmt.Fprintf(stderr, "codex-edge %s: %v\n", cmd, err)
		return 1
	}
	return 0
}

type usageError struct{ error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// flags holds the flags every subcommand shares.
type flags struct {
	*flag.FlagSet
	config string
	json   bool
}

func newFlags(name string, withJSON bool) *flags {
	f := &flags{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError)}
	f.SetOutput(io.Discard)
	f.StringVar(&f.config, "config", "", "configuration file (YAML)")
	if withJSON {
		f.BoolVar(&f.json, "json", false, "print JSON, one object per line")
	}
	return f
}

// parse accepts flags before, between and after positional arguments.
func (f *flags) parse(args []string) ([]string, error) {
	var pos []string
	for {
		if err := f.Parse(args); err != nil {
			return nil, usageError{err}
		}
		args = f.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func (e *env) config(f *flags) (config.Config, error) {
	path := f.config
	if path == "" {
		path = e.getenv("CODEX_CONFIG")
	}
	return config.Load(path, e.getenv)
}

func (e *env) logger(cfg config.Config) *slog.Logger {
	var lvl slog.Level
	// config.Load has checked the level; an unknown one would stay at info.
	_ = lvl.UnmarshalText([]byte(cfg.LogLevel))
	return slog.New(slog.NewJSONHandler(e.stderr, &slog.HandlerOptions{Level: lvl}))
}

// openStore opens the store the configuration selects: Postgres when
// CODEX_DATABASE_URL is set, else SQLite in CODEX_DATA_DIR.
func (e *env) openStore(cfg config.Config) (server.Store, error) {
	if cfg.DatabaseURL != "" {
		db, err := postgres.Open(e.ctx, cfg.DatabaseURL, postgres.Options{Logger: e.logger(cfg)})
		if err != nil {
			return nil, err
		}
		return db, nil
	}
	db, err := sqlite.Open(e.ctx, cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("open store in %s: %w", cfg.DataDir, err)
	}
	return db, nil
}

// migratePostgres applies the Postgres migrations as the owner role:
// CODEX_DATABASE_OWNER_URL, or else CODEX_DATABASE_URL (codex-edge migrate
// run with the owner's URL).
func (e *env) migratePostgres(cfg config.Config) error {
	url := e.getenv("CODEX_DATABASE_OWNER_URL")
	if url == "" {
		url = cfg.DatabaseURL
	}
	if err := postgres.Migrate(e.ctx, url, cfg.DatabaseAppRole); err != nil {
		return fmt.Errorf("migrate the Postgres database (as its owner role, granting %s): %w", cfg.DatabaseAppRole, err)
	}
	return nil
}

// The waits between start-up attempts to reach Postgres: the first, then
// doubling up to the longest.
var postgresRetryFirst, postgresRetryMax = time.Second, 30 * time.Second

// waitPostgres runs serve's start-up check of a Postgres store until
// Postgres can be reached: a database that is down or still starting is
// not a reason to exit (an orchestrator would only restart the edge in a
// loop), while a refusal (bad credentials, a role that could bypass
// row-level security, an unmigrated schema) stops start-up at once.
func (e *env) waitPostgres(cfg config.Config, db *postgres.DB, log *slog.Logger) error {
	wait := postgresRetryFirst
	for attempt := 1; ; attempt++ {
		err := e.checkPostgresServe(cfg, db)
		if err == nil || !postgres.Unreachable(err) {
			if err == nil && attempt > 1 {
				log.Info("Postgres reachable; starting", "attempts", attempt)
			}
			return err
		}
		log.Warn("Postgres unreachable; waiting for it before serving", "attempt", attempt, "retry_in", wait.String(), "err", err,
			"hint", "check that the database runs and that CODEX_DATABASE_URL names its host and port")
		select {
		case <-e.ctx.Done():
			return fmt.Errorf("stopped while waiting for Postgres: %w", err)
		case <-time.After(wait):
		}
		wait = min(2*wait, postgresRetryMax)
	}
}

// checkPostgresServe is serve's start-up check of a Postgres store: it
// migrates first when the operator allows it (CODEX_DATABASE_MIGRATE=true,
// with the owner's URL in CODEX_DATABASE_OWNER_URL), then refuses a role
// that could bypass row-level security and a schema not migrated yet.
func (e *env) checkPostgresServe(cfg config.Config, db *postgres.DB) error {
	switch m := strings.TrimSpace(e.getenv("CODEX_DATABASE_MIGRATE")); m {
	case "", "false":
	case "true":
		if e.getenv("CODEX_DATABASE_OWNER_URL") == "" {
			return errors.New("CODEX_DATABASE_MIGRATE=true needs the owner role's URL in CODEX_DATABASE_OWNER_URL (serve itself connects as the application role, which may not change the schema)")
		}
		if err := e.migratePostgres(cfg); err != nil {
			return err
		}
	default:
		return fmt.Errorf("CODEX_DATABASE_MIGRATE=%q: want true or false", m)
	}
	if err := db.CheckServeRole(e.ctx, cfg.DatabaseAppRole); err != nil {
		return fmt.Errorf("refusing to serve: %w", err)
	}
	if err := db.CheckSchema(e.ctx); err != nil {
		return fmt.Errorf("refusing to serve: %w", err)
	}
	return nil
}

// closeStore closes st, and reports its error unless *err already holds
// the first one.
func closeStore(st server.Store, err *error) {
	if cerr := st.Close(); cerr != nil && *err == nil {
		*err = fmt.Errorf("close store: %w", cerr)
	}
}

func (e *env) withStore(f *flags, fn func(config.Config, server.Store) error) (err error) {
	cfg, err := e.config(f)
	if err != nil {
		return err
	}
	st, err := e.openStore(cfg)
	if err != nil {
		return err
	}
	defer closeStore(st, &err)
	return fn(cfg, st)
}

// withOrg runs fn with the store and the org that ref (an id or a name)
// names.
func (e *env) withOrg(f *flags, ref string, fn func(config.Config, server.Store, edge.Org) error) error {
	return e.withStore(f, func(cfg config.Config, st server.Store) error {
		o, err := e.findOrg(st, ref)
		if err != nil {
			return err
		}
		return fn(cfg, st, o)
	})
}

// baseMemory is what the edge needs beside its in-process cache with a
// thousand streams open (DESIGN §9), with room to spare.
const baseMemory = 128 << 20

// memoryLimit sets the Go runtime's soft memory limit, unless GOMEMLIMIT
// chose one, to the in-process cache budget plus baseMemory. Without it the
// collector lets the heap grow to twice the live data, and the cache alone
// is live data up to its whole budget; with it the collector works harder
// near the limit instead. It is soft: a heap that needs more gets it.
func (e *env) memoryLimit(cfg config.Config) (int64, bool) {
	if e.getenv("GOMEMLIMIT") != "" {
		return 0, false
	}
	limit := int64(baseMemory)
	if cfg.CacheEnabled && cfg.RedisURL == "" {
		limit += cfg.CacheBudgetBytes
	}
	debug.SetMemoryLimit(limit)
	return limit, true
}

func (e *env) serve(args []string) (err error) {
	f := newFlags("serve", false)
	if pos, err := f.parse(args); err != nil {
		return err
	} else if len(pos) > 0 {
		return usagef("unexpected argument %q", pos[0])
	}
	cfg, err := e.config(f)
	if err != nil {
		return err
	}
	log := e.logger(cfg)
	if limit, set := e.memoryLimit(cfg); set {
		log.Info("Go soft memory limit set", "bytes", limit, "hint", "set GOMEMLIMIT to choose another")
	}
	st, err := e.openStore(cfg)
	if err != nil {
		return err
	}
	defer closeStore(st, &err)
	if db, ok := st.(*postgres.DB); ok {
		if err := e.waitPostgres(cfg, db, log); err != nil {
			return err
		}
	}
	e.applyTelemetryConfig(cfg, log)
	srv, err := server.New(e.ctx, cfg, st, log, server.Options{Getenv: e.getenv})
	if err != nil {
		return err
	}
	if err := srv.Start(e.ctx); err != nil {
		return err
	}
	<-e.ctx.Done()
	log.Info("shutting down: finishing requests and writing queued metadata")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return srv.Shutdown(ctx)
}

func (e *env) migrate(args []string) error {
	f := newFlags("migrate", false)
	if _, err := f.parse(args); err != nil {
		return err
	}
	cfg, err := e.config(f)
	if err != nil {
		return err
	}
	if cfg.DatabaseURL != "" || e.getenv("CODEX_DATABASE_OWNER_URL") != "" {
		if cfg.DatabaseURL == "" {
			cfg.DatabaseURL = e.getenv("CODEX_DATABASE_OWNER_URL")
		}
		if err := e.migratePostgres(cfg); err != nil {
			return err
		}
		fmt.Fprintln(e.stdout, "migrations applied")
		return nil
	}
	// Opening the SQLite store applies its migrations.
	return e.withStore(f, func(cfg config.Config, st server.Store) error {
		fmt.Fprintln(e.stdout, "migrations applied")
		return nil
	})
}

func (e *env) orgsCreate(args []string) error {
	f := newFlags("orgs create", false)
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || strings.TrimSpace(pos[0]) == "" {
		return usagef("give the org's name")
	}
	return e.withStore(f, func(_ config.Config, st server.Store) error {
		o := edge.Org{ID: apikey.NewID("org_"), Name: strings.TrimSpace(pos[0]), CreatedAt: time.Now().UTC()}
		if err := st.CreateOrg(e.ctx, o); err != nil {
			if errors.Is(err, edge.ErrConflict) {
				return fmt.Errorf("an org named %q exists already", o.Name)
			}
			return err
		}
		fmt.Fprintln(e.stdout, o.ID)
		return nil
	})
}

func (e *env) orgsList(args []string) error {
	f := newFlags("orgs list", true)
	if _, err := f.parse(args); err != nil {
		return err
	}
	return e.withStore(f, func(_ config.Config, st server.Store) error {
		orgs, err := st.Orgs(e.ctx)
		if err != nil {
			return err
		}
		if f.json {
			enc := json.NewEncoder(e.stdout)
			for _, o := range orgs {
				if err := enc.Encode(map[string]any{"id": o.ID, "name": o.Name, "created_at": o.CreatedAt}); err != nil {
					return err
				}
			}
			return nil
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tCREATED")
		for _, o := range orgs {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", o.ID, o.Name, o.CreatedAt.Format(time.RFC3339))
		}
		return tw.Flush()
	})
}

// findOrg accepts an org id or name.
func (e *env) findOrg(st edge.Store, ref string) (edge.Org, error) {
	if ref == "" {
		return edge.Org{}, usagef("--org is required")
	}
	if o, err := st.Org(e.ctx, ref); err == nil {
		return o, nil
	} else if !errors.Is(err, edge.ErrNotFound) {
		return edge.Org{}, err
	}
	orgs, err := st.Orgs(e.ctx)
	if err != nil {
		return edge.Org{}, err
	}
	for _, o := range orgs {
		if o.Name == ref {
			return o, nil
		}
	}
	return edge.Org{}, fmt.Errorf("no org %q (list them with 'codex-edge orgs list')", ref)
}

func (e *env) keysCreate(args []string) error {
	f := newFlags("keys create", true)
	org := f.String("org", "", "org id or name")
	name := f.String("name", "", "a name for the key, e.g. its owner")
	if pos, err := f.parse(args); err != nil {
		return err
	} else if len(pos) > 0 {
		return usagef("unexpected argument %q", pos[0])
	}
	if strings.TrimSpace(*name) == "" {
		return usagef("--name is required")
	}
	return e.withOrg(f, *org, func(_ config.Config, st server.Store, o edge.Org) error {
		secret, err := apikey.Generate()
		if err != nil {
			return err
		}
		k := edge.APIKey{
			ID: apikey.NewID("key_"), OrgID: o.ID, Name: strings.TrimSpace(*name),
			Prefix: apikey.DisplayPrefix(secret), Hash: apikey.Hash(secret),
			State: edge.KeyActive, CreatedAt: time.Now().UTC(),
		}
		if err := st.CreateKey(e.ctx, k); err != nil {
			return err
		}
		// The one place the secret is ever shown.
		if f.json {
			return json.NewEncoder(e.stdout).Encode(map[string]string{"id": k.ID, "key": secret.Reveal(), "prefix": k.Prefix})
		}
		// A lost write here loses the key: report it.
		_, err = fmt.Fprintln(e.stdout, secret.Reveal())
		return err
	})
}

func (e *env) keysList(args []string) error {
	f := newFlags("keys list", true)
	org := f.String("org", "", "org id or name")
	if _, err := f.parse(args); err != nil {
		return err
	}
	return e.withOrg(f, *org, func(_ config.Config, st server.Store, o edge.Org) error {
		keys, err := st.Keys(e.ctx, o.ID)
		if err != nil {
			return err
		}
		if f.json {
			enc := json.NewEncoder(e.stdout)
			for _, k := range keys {
				m := map[string]any{"id": k.ID, "org_id": k.OrgID, "name": k.Name, "prefix": k.Prefix, "state": k.State, "created_at": k.CreatedAt}
				if !k.RevokedAt.IsZero() {
					m["revoked_at"] = k.RevokedAt
				}
				if err := enc.Encode(m); err != nil {
					return err
				}
			}
			return nil
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tPREFIX\tSTATE\tCREATED")
		for _, k := range keys {
			fmt.Fprintf(tw, "%s\t%s\t%s…\t%s\t%s\n", k.ID, k.Name, k.Prefix, k.State, k.CreatedAt.Format(time.RFC3339))
		}
		return tw.Flush()
	})
}

func (e *env) keysRevoke(args []string) error {
	f := newFlags("keys revoke", false)
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("give the key's id or the key itself")
	}
	return e.withStore(f, func(_ config.Config, st server.Store) error {
		var k edge.APIKey
		var err error
		if secret, perr := apikey.Parse(pos[0]); perr == nil {
			k, err = st.KeyByHash(e.ctx, apikey.Hash(secret))
		} else {
			k, err = st.KeyByID(e.ctx, pos[0])
		}
		if errors.Is(err, edge.ErrNotFound) {
			return errors.New("no such key (list keys with 'codex-edge keys list --org ORG')")
		}
		if err != nil {
			return err
		}
		if err := st.RevokeKey(e.ctx, k.OrgID, k.ID, time.Now().UTC()); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "revoked %s\n", k.ID)
		return nil
	})
}

func (e *env) providersSet(args []string) error {
	f := newFlags("providers set", false)
	org := f.String("org", "", "org id or name")
	keyEnv := f.String("api-key-env", "", "name of the environment variable holding the provider key (serve reads it)")
	keyStdin := f.Bool("api-key-stdin", false, "read the provider key from standard input")
	baseURL := f.String("base-url", "", "provider API root, e.g. https://api.openai.com (default: the provider's)")
	insecure := f.Bool("allow-insecure-http", false, "allow a plain http:// --base-url to a host other than loopback: the provider key and prompts cross the network unencrypted")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || !edge.Provider(pos[0]).Valid() {
		return usagef("give the provider: openai or anthropic")
	}
	if (*keyEnv == "") == !*keyStdin {
		return usagef("give exactly one of --api-key-env VAR and --api-key-stdin")
	}
	return e.withOrg(f, *org, func(cfg config.Config, st server.Store, o edge.Org) error {
		p := edge.Provider(pos[0])
		pc := edge.ProviderConfig{OrgID: o.ID, Provider: p, BaseURL: strings.TrimRight(*baseURL, "/"), APIKeyEnv: *keyEnv,
			AllowInsecureHTTP: *insecure, UpdatedAt: time.Now().UTC()}
		// Checked before reading a key from stdin, and again by the store
		// (without the deny list, which only the configuration knows) and
		// by serve when it loads the setting.
		if err := pc.Check(cfg.APIKeyEnvDenyList()); err != nil {
			return err
		}
		from := "$" + *keyEnv
		if *keyStdin {
			key, err := readSecret(e.stdin)
			if err != nil {
				return err
			}
			kr, err := e.keyring(cfg, st)
			if err != nil {
				return err
			}
			pc.SealedKey, err = kr.Seal(e.ctx, o.ID, keyring.PurposeCredential, edge.CredentialRecord(p), key)
			clear(key)
			if err != nil {
				return fmt.Errorf("seal the %s key: %w", p, err)
			}
			from = "stdin, stored encrypted"
		}
		if err := st.SetProvider(e.ctx, pc); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%s set for %s (key from %s)\n", pc.Provider, o.Name, from)
		return nil
	})
}

func (e *env) providersList(args []string) error {
	f := newFlags("providers list", true)
	org := f.String("org", "", "org id or name")
	if _, err := f.parse(args); err != nil {
		return err
	}
	return e.withOrg(f, *org, func(_ config.Config, st server.Store, o edge.Org) error {
		pcs, err := st.Providers(e.ctx, o.ID)
		if err != nil {
			return err
		}
		if f.json {
			enc := json.NewEncoder(e.stdout)
			for _, p := range pcs {
				if err := enc.Encode(map[string]any{"provider": p.Provider, "base_url": p.BaseURL, "api_key_env": p.APIKeyEnv, "sealed": len(p.SealedKey) > 0,
					"allow_insecure_http": p.AllowInsecureHTTP, "updated_at": p.UpdatedAt}); err != nil {
					return err
				}
			}
			return nil
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PROVIDER\tBASE URL\tKEY FROM\tUPDATED")
		for _, p := range pcs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.Provider, p.BaseURL, keySource(p), p.UpdatedAt.Format(time.RFC3339))
		}
		return tw.Flush()
	})
}

func keySource(p edge.ProviderConfig) string {
	if len(p.SealedKey) > 0 {
		return "sealed"
	}
	return "$" + p.APIKeyEnv
}

// maxSecret bounds a secret read from standard input.
const maxSecret = 64 << 10

// readSecret reads a secret from r, ignoring surrounding whitespace.
func readSecret(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxSecret+1))
	if err != nil {
		return nil, fmt.Errorf("read the key from standard input: %w", err)
	}
	if len(b) > maxSecret {
		return nil, errors.New("the key on standard input is longer than 64 KiB")
	}
	key := []byte(strings.TrimSpace(string(b)))
	clear(b)
	if len(key) == 0 {
		return nil, errors.New("no key on standard input (pipe it in: printenv OPENAI_API_KEY | codex-edge providers set …)")
	}
	return key, nil
}

func (e *env) keyring(cfg config.Config, st server.Store) (*keyring.Keyring, error) {
	// Subcommands report what they did on stdout; the log carries warnings
	// only (such as the local master key's development-only notice).
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return server.OpenKeyring(e.ctx, cfg, st, e.getenv, log)
}

func (e *env) cryptoStatus(args []string) error {
	f := newFlags("crypto status", true)
	org := f.String("org", "", "org id or name (default: every org)")
	if _, err := f.parse(args); err != nil {
		return err
	}
	return e.withStore(f, func(cfg config.Config, st server.Store) error {
		id := ""
		if *org != "" {
			o, err := e.findOrg(st, *org)
			if err != nil {
				return err
			}
			id = o.ID
		}
		kr, err := e.keyring(cfg, st)
		if err != nil {
			return err
		}
		list, err := kr.Status(e.ctx, id)
		if err != nil {
			return err
		}
		if f.json {
			enc := json.NewEncoder(e.stdout)
			for _, k := range list {
				m := map[string]any{"org_id": k.OrgID, "dek_id": k.DEKID.String(), "generation": k.Generation, "state": k.State,
					"master_ref": k.MasterRef, "master_version": k.MasterVersion, "created_at": k.CreatedAt, "age_seconds": int64(k.Age.Seconds()),
					"seals": k.Seals}
				if !k.RewrappedAt.IsZero() {
					m["rewrapped_at"] = k.RewrappedAt
				}
				if err := enc.Encode(m); err != nil {
					return err
				}
			}
			return nil
		}
		spec := cfg.KEK
		fmt.Fprintf(e.stdout, "master key: %s\n", spec)
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ORG\tGEN\tSTATE\tMASTER KEY\tVERSION\tAGE\tSEALS")
		for _, k := range list {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%d\n", k.OrgID, k.Generation, k.State, k.MasterRef, k.MasterVersion, k.Age.Round(time.Second), k.Seals)
		}
		return tw.Flush()
	})
}

func (e *env) cryptoRotate(args []string) error {
	f := newFlags("crypto rotate", false)
	org := f.String("org", "", "org id or name")
	if _, err := f.parse(args); err != nil {
		return err
	}
	return e.withOrg(f, *org, func(cfg config.Config, st server.Store, o edge.Org) error {
		kr, err := e.keyring(cfg, st)
		if err != nil {
			return err
		}
		k, err := kr.Rotate(e.ctx, o.ID)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "org %s: data key generation %d is active for new writes; older generations still open existing data\n", o.Name, k.Generation)
		return nil
	})
}

func (e *env) cryptoRewrap(args []string) error {
	f := newFlags("crypto rewrap", false)
	if _, err := f.parse(args); err != nil {
		return err
	}
	return e.withStore(f, func(cfg config.Config, st server.Store) error {
		kr, err := e.keyring(cfg, st)
		if err != nil {
			return err
		}
		res, err := kr.Rewrap(e.ctx, func(ev keyring.RewrapEvent) {
			state := "already current"
			switch {
			case ev.Err != nil:
				state = "FAILED: " + ev.Err.Error()
			case ev.Rewrapped:
				state = "rewrapped " + ev.From.Version + " -> " + ev.To.Version
			}
			fmt.Fprintf(e.stdout, "[%d/%d] org %s generation %d: %s\n", ev.N, ev.Total, ev.OrgID, ev.Generation, state)
		})
		fmt.Fprintf(e.stdout, "%d data keys: %d rewrapped, %d already current, %d failed\n", res.Total, res.Rewrapped, res.Current, res.Failed)
		if err != nil {
			return fmt.Errorf("%w (the failed keys stay wrapped by their old master key version; keep it configured until they are rewrapped or their content expires)", err)
		}
		return nil
	})
}

func (e *env) cryptoShred(args []string) error {
	f := newFlags("crypto shred", false)
	org := f.String("org", "", "org id or name")
	yes := f.Bool("yes", false, "confirm: everything encrypted for this org becomes unreadable, for good")
	if _, err := f.parse(args); err != nil {
		return err
	}
	if !*yes {
		return usagef("crypto shred destroys the org's data keys: every credential, cache entry and record sealed for it becomes unreadable for good; add --yes to confirm")
	}
	return e.withOrg(f, *org, func(cfg config.Config, st server.Store, o edge.Org) error {
		kr, err := e.keyring(cfg, st)
		if err != nil {
			return err
		}
		n, err := kr.Shred(e.ctx, o.ID)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "org %s: %d data keys destroyed; its encrypted content is unreadable now (running edges drop their cached keys within CODEX_CHANGE_POLL). Set provider keys again to resume.\n", o.Name, n)
		return nil
	})
}
