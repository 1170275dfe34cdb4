package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/persiv/codex/controlplane"
	"github.com/persiv/codex/controlplane/config"
	"github.com/persiv/codex/controlplane/dashboard"
	"github.com/persiv/codex/controlplane/enroll"
	"github.com/persiv/codex/controlplane/httpapi"
	"github.com/persiv/codex/controlplane/ingest"
	"github.com/persiv/codex/controlplane/natsauth"
	"github.com/persiv/codex/controlplane/natsbus"
	"github.com/persiv/codex/controlplane/password"
	"github.com/persiv/codex/controlplane/sealer"
	"github.com/persiv/codex/controlplane/sealer/awskms"
	"github.com/persiv/codex/controlplane/store/postgres"
	"github.com/persiv/codex/controlplane/store/sqlite"
	"github.com/persiv/codex/controlplane/totp"
)

const usage = `usage:
  codex-controlplane serve [--config FILE]
  codex-controlplane orgs create NAME                                   (prints the org id)
  codex-controlplane users create --org ORG --email EMAIL --role owner|admin|viewer   (password on stdin)
  codex-controlplane enroll-token create --org ORG [--ttl 24h]           (prints the token)
  codex-controlplane nats-config [--resolver-dir DIR] [--server-name NAME] [--store-dir DIR]
      [--tls-cert FILE --tls-key FILE] [--cluster-name NAME --cluster-listen HOST:PORT
      --routes nats://h1:6222,nats://h2:6222,... [--cluster-tls-cert FILE --cluster-tls-key FILE [--cluster-tls-ca FILE]]]
                                                                         (server config for an external NATS, alone or one node of a cluster)
  codex-controlplane migrate                                             (Postgres: apply migrations as the owner)
  codex-controlplane staff create --email EMAIL                          (password on stdin; prints the TOTP otpauth:// URI once)
  codex-controlplane staff disable --email EMAIL                         (ends its sessions and grants at once)
ORG is an org id or an org name. Every command takes --config FILE; every key is overridable by CODEX_<KEY>.
`

// errUsage marks a command-line mistake: exit status 2.
var errUsage = errors.New("usage")

// Run runs one command and returns the process exit status.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) (string, bool)) int {
	err := run(ctx, args, stdin, stdout, stderr, getenv)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage):
		if msg := strings.TrimPrefix(err.Error(), errUsage.Error()); msg != "" {
			fmt.Fprintln(stderr, "codex-controlplane:"+strings.TrimPrefix(msg, ":"))
		}
		fmt.Fprint(stderr, usage)
		return 2
	default:
		fmt.Fprintln(stderr, "codex-controlplane:", err)
		return 1
	}
}

func usageErr(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errUsage}, a...)...)
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) (string, bool)) (err error) {
	if len(args) == 0 {
		return errUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "orgs", "users", "enroll-token":
		if len(rest) == 0 || rest[0] != "create" {
			return usageErr("%s: only 'create' exists", cmd)
		}
		cmd, rest = cmd+" create", rest[1:]
	case "staff":
		if len(rest) == 0 || (rest[0] != "create" && rest[0] != "disable") {
			return usageErr("staff: 'create' or 'disable'")
		}
		cmd, rest = cmd+" "+rest[0], rest[1:]
	}
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfgPath := fs.String("config", "", "YAML configuration file")
	org := fs.String("org", "", "org id or name")
	email := fs.String("email", "", "user email")
	role := fs.String("role", "", "owner, admin or viewer")
	ttl := fs.Duration("ttl", 24*time.Hour, "token lifetime")
	resolverDir := fs.String("resolver-dir", "/var/lib/nats/accounts", "nats-server account resolver directory")
	var node nodeFlags
	node.register(fs)
	if err := fs.Parse(rest); err != nil {
		return usageErr("%s: %v", cmd, err)
	}
	cfg, err := config.Load(*cfgPath, getenv)
	if err != nil {
		return err
	}
	switch cmd {
	case "serve":
		return serve(ctx, cfg, stderr, getenv)
	case "migrate":
		if cfg.DatabaseURL == "" {
			return errors.New("migrate: the embedded SQLite store migrates itself; set CODEX_DATABASE_URL to the owner role's URL")
		}
		return postgres.Migrate(ctx, cfg.DatabaseURL, cfg.DatabaseAppRole)
	}

	store, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeStore(store, &err)
	if cmd == "nats-config" {
		nc, err := node.config(*resolverDir, cfg.NATSMaxConnections)
		// The server's store must hold what the ingest account may use,
		// or the server refuses the account JetStream.
		nc.MaxFileStore = cfg.NATSAccountMaxStorage
		if err == nil {
			err = nc.Validate()
		}
		if err != nil {
			return usageErr("nats-config: %v", err)
		}
		auth, _, err := openAuthority(ctx, cfg, store, newLogger(stderr, cfg.LogLevel))
		if err != nil {
			return err
		}
		conf, err := auth.NodeConfig(nc)
		if err != nil {
			return err
		}
		_, err = io.WriteString(stdout, conf)
		return err
	}
	now := time.Now().UTC()
	switch cmd {
	case "orgs create":
		if fs.NArg() != 1 || strings.TrimSpace(fs.Arg(0)) == "" || len(fs.Arg(0)) > 200 {
			return usageErr("orgs create: give one NAME (at most 200 bytes)")
		}
		o := controlplane.Org{ID: controlplane.NewID("org"), Name: strings.TrimSpace(fs.Arg(0)), CreatedAt: now}
		if err := store.CreateOrg(ctx, o); err != nil {
			return err
		}
		fmt.Fprintln(stdout, o.ID)
	case "users create":
		r := controlplane.Role(*role)
		if *org == "" || !validEmail(*email) || !r.Valid() || fs.NArg() != 0 {
			return usageErr("users create: need --org, a valid --email and --role owner|admin|viewer")
		}
		o, err := findOrg(ctx, store, *org)
		if err != nil {
			return err
		}
		pw, err := readPassword(stdin)
		if err != nil {
			return err
		}
		hash, err := password.Hash(pw)
		if err != nil {
			return err
		}
		u := controlplane.User{ID: controlplane.NewID("usr"), OrgID: o.ID, Email: strings.ToLower(*email), Role: r, PasswordHash: hash, CreatedAt: now}
		if err := store.CreateUser(ctx, u); err != nil {
			return err
		}
		fmt.Fprintln(stdout, u.ID)
	case "enroll-token create":
		if *org == "" || fs.NArg() != 0 {
			return usageErr("enroll-token create: need --org")
		}
		o, err := findOrg(ctx, store, *org)
		if err != nil {
			return err
		}
		tok, err := (&enroll.Service{Store: store}).CreateToken(ctx, o.ID, *ttl)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, tok)
	case "staff create":
		if !validEmail(*email) || fs.NArg() != 0 {
			return usageErr("staff create: need a valid --email")
		}
		return createStaff(ctx, cfg, store, strings.ToLower(*email), stdin, stdout, stderr, now)
	case "staff disable":
		if !validEmail(*email) || fs.NArg() != 0 {
			return usageErr("staff disable: need a valid --email")
		}
		st, err := store.StaffByEmail(ctx, strings.ToLower(*email))
		if errors.Is(err, controlplane.ErrNotFound) {
			return fmt.Errorf("no staff account %s", *email)
		}
		if err != nil {
			return err
		}
		if err := store.DisableStaff(ctx, st.ID, now); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "staff account %s (%s) disabled: its sessions, requests and grants have ended\n", st.Email, st.ID)
	default:
		return usageErr("unknown command %q", cmd)
	}
	return nil
}

// nodeFlags are nats-config's flags describing the server: alone, or one
// node of a JetStream cluster.
type nodeFlags struct {
	serverName, storeDir, tlsCert, tlsKey       string
	clusterName, clusterListen, routes          string
	clusterTLSCert, clusterTLSKey, clusterTLSCA string
}

func (n *nodeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&n.serverName, "server-name", "", "nats-config: the server's name, unique in its cluster")
	fs.StringVar(&n.storeDir, "store-dir", "", "nats-config: JetStream's store directory")
	fs.StringVar(&n.tlsCert, "tls-cert", "", "nats-config: client TLS certificate file")
	fs.StringVar(&n.tlsKey, "tls-key", "", "nats-config: client TLS key file")
	fs.StringVar(&n.clusterName, "cluster-name", "", "nats-config: the cluster's name")
	fs.StringVar(&n.clusterListen, "cluster-listen", "", "nats-config: the route listener's host:port")
	fs.StringVar(&n.routes, "routes", "", "nats-config: every node's route URL, comma-separated")
	fs.StringVar(&n.clusterTLSCert, "cluster-tls-cert", "", "nats-config: route TLS certificate file")
	fs.StringVar(&n.clusterTLSKey, "cluster-tls-key", "", "nats-config: route TLS key file")
	fs.StringVar(&n.clusterTLSCA, "cluster-tls-ca", "", "nats-config: CA file the nodes' route certificates are checked against")
}

// config builds the node's description; natsauth.NodeConfig.Validate
// checks the rest.
func (n *nodeFlags) config(resolverDir string, maxConns int) (natsauth.NodeConfig, error) {
	c := natsauth.NodeConfig{ResolverDir: resolverDir, MaxConnections: maxConns, ServerName: n.serverName, StoreDir: n.storeDir}
	if n.tlsCert != "" || n.tlsKey != "" {
		c.TLS = &natsauth.TLSFiles{Cert: n.tlsCert, Key: n.tlsKey}
	}
	if n.clusterName == "" && n.clusterListen == "" && n.routes == "" && n.clusterTLSCert == "" && n.clusterTLSKey == "" && n.clusterTLSCA == "" {
		return c, nil
	}
	if n.clusterName == "" || n.clusterListen == "" || n.routes == "" {
		return c, errors.New("a cluster node needs --cluster-name, --cluster-listen and --routes (and --server-name and --store-dir)")
	}
	c.Cluster = &natsauth.ClusterNode{Name: n.clusterName, Listen: n.clusterListen}
	for r := range strings.SplitSeq(n.routes, ",") {
		if r = strings.TrimSpace(r); r == "" {
			return c, fmt.Errorf("--routes %q holds an empty route", n.routes)
		}
		c.Cluster.Routes = append(c.Cluster.Routes, r)
	}
	if n.clusterTLSCert != "" || n.clusterTLSKey != "" || n.clusterTLSCA != "" {
		c.Cluster.TLS = &natsauth.TLSFiles{Cert: n.clusterTLSCert, Key: n.clusterTLSKey, CA: n.clusterTLSCA}
	}
	return c, nil
}

// findOrg accepts an org id or an org name. Names need not be unique: a
// name shared by several orgs is refused, with their ids.
func findOrg(ctx context.Context, store controlplane.Store, ref string) (controlplane.Org, error) {
	if o, err := store.Org(ctx, ref); err == nil {
		return o, nil
	} else if !errors.Is(err, controlplane.ErrNotFound) {
		return controlplane.Org{}, err
	}
	orgs, err := store.OrgsByName(ctx, ref)
	if err != nil {
		return controlplane.Org{}, err
	}
	switch len(orgs) {
	case 0:
		return controlplane.Org{}, fmt.Errorf("no org with the id or name %q", ref)
	case 1:
		return orgs[0], nil
	}
	ids := make([]string, len(orgs))
	for i, o := range orgs {
		ids[i] = o.ID
	}
	return controlplane.Org{}, fmt.Errorf("%d orgs are named %q: give the id (%s)", len(orgs), ref, strings.Join(ids, ", "))
}

// createStaff makes a staff account with the password read from stdin
// and a new TOTP secret, sealed at rest; the secret's otpauth:// URI is
// printed once, for the staff member's authenticator app.
func createStaff(ctx context.Context, cfg config.Config, store controlplane.Store, email string, stdin io.Reader, stdout, stderr io.Writer, now time.Time) error {
	pw, err := readPassword(stdin)
	if err != nil {
		return err
	}
	hash, err := password.Hash(pw)
	if err != nil {
		return err
	}
	seal, err := openSealer(ctx, cfg, newLogger(stderr, cfg.LogLevel))
	if err != nil {
		return err
	}
	secret, uri, err := totp.New(email)
	if err != nil {
		return err
	}
	st := controlplane.Staff{ID: controlplane.NewID("stf"), Email: email, PasswordHash: hash, CreatedAt: now}
	if st.TOTPSecret, err = seal.Seal(ctx, sealer.Binding{Purpose: controlplane.StaffTOTPPurpose, Name: "staff/" + st.ID}, []byte(secret)); err != nil {
		return fmt.Errorf("seal the TOTP secret: %w", err)
	}
	if err := store.CreateStaff(ctx, st); err != nil {
		if errors.Is(err, controlplane.ErrConflict) {
			return fmt.Errorf("a staff account %s exists already", email)
		}
		return err
	}
	_, err = fmt.Fprintln(stdout, uri)
	return err
}

func validEmail(s string) bool {
	at := strings.IndexByte(s, '@')
	return len(s) <= 254 && at > 0 && at < len(s)-1 && !strings.ContainsAny(s, " \t\r\n<>\"")
}

// readPassword reads the first line of r: the password, never a flag.
func readPassword(r io.Reader) (string, error) {
	line, err := bufio.NewReader(io.LimitReader(r, password.MaxLength+2)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password from stdin: %w", err)
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return "", errors.New("no password on stdin")
	}
	return pw, nil
}

// openAuthority opens the NATS authority kept in the store, which every
// instance shares, its seeds sealed with the configured key, and returns
// it with that sealer (which also seals the staff's TOTP secrets). The
// files an earlier version kept in the data directory are taken over into
// a store that has none.
func openAuthority(ctx context.Context, cfg config.Config, store controlplane.Store, log *slog.Logger) (*natsauth.Authority, *sealer.Sealer, error) {
	s, err := openSealer(ctx, cfg, log)
	if err != nil {
		return nil, nil, err
	}
	auth, err := natsauth.Open(ctx, filepath.Join(cfg.DataDir, "nats", "keys"), natsauth.Options{
		Sealer: s, Store: store, Limits: natsauth.Limits{MaxStorage: cfg.NATSAccountMaxStorage}})
	return auth, s, err
}

// openSealer builds the sealer of the control plane's secrets from
// secrets_kms_key, secrets_kek or secrets_kek_file, or else a development
// key file in the data directory.
func openSealer(ctx context.Context, cfg config.Config, log *slog.Logger) (*sealer.Sealer, error) {
	switch {
	case cfg.SecretsKMSKey != "":
		kp, err := awskms.Open(ctx, cfg.SecretsKMSKey)
		if err != nil {
			return nil, fmt.Errorf("secrets_kms_key: %w", err)
		}
		log.Info("secrets sealed with AWS KMS", "key", kp)
		return sealer.New(kp), nil
	case cfg.SecretsKEK != "":
		key, err := sealer.ParseKey(string(cfg.SecretsKEK))
		if err != nil {
			return nil, fmt.Errorf("CODEX_SECRETS_KEK: %w", err)
		}
		defer clear(key)
		kp, err := sealer.NewLocalKey(key)
		if err != nil {
			return nil, err
		}
		return sealer.New(kp), nil
	case cfg.SecretsKEKFile != "":
		kp, err := sealer.LoadKeyFile(cfg.SecretsKEKFile)
		if err != nil {
			return nil, fmt.Errorf("secrets_kek_file: %w", err)
		}
		return sealer.New(kp), nil
	}
	path := filepath.Join(cfg.DataDir, "secrets.key")
	kp, err := sealer.LoadOrCreateKeyFile(path)
	if err != nil {
		return nil, err
	}
	log.Warn("DEVELOPMENT ONLY: the NATS seeds are sealed with the key file " + path +
		", next to them in the data directory: whoever reads the directory reads them. " +
		"Set CODEX_SECRETS_KMS_KEY (AWS KMS), or CODEX_SECRETS_KEK / CODEX_SECRETS_KEK_FILE with a key kept elsewhere.")
	return sealer.New(kp), nil
}

// closeStore closes st, and reports its error unless *err already holds
// the first one.
func closeStore(st controlplane.Store, err *error) {
	if cerr := st.Close(); cerr != nil && *err == nil {
		*err = fmt.Errorf("close store: %w", cerr)
	}
}

func openStore(ctx context.Context, cfg config.Config) (controlplane.Store, error) {
	if cfg.DatabaseURL != "" {
		return postgres.Open(ctx, cfg.DatabaseURL)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	return sqlite.Open(ctx, filepath.Join(cfg.DataDir, "controlplane.db"))
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level)) // validated by config
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

// baseMemory is what the control plane needs beside its password hashes
// (embedded NATS, the store, the API and dashboard), with room to spare.
const baseMemory = 128 << 20

// memoryLimit sets the Go runtime's soft memory limit, unless GOMEMLIMIT
// chose one, to baseMemory plus the memory of cfg.PasswordHashers hashes
// running at once. Each hash allocates its 64 MiB afresh and drops it
// when done: without a limit the collector lets that garbage grow the
// heap to twice the live data, which under a login flood is hundreds of
// MiB more than the hashes themselves. It is soft: a heap that needs more
// gets it.
func memoryLimit(cfg config.Config, getenv func(string) (string, bool)) (int64, bool) {
	if v, _ := getenv("GOMEMLIMIT"); v != "" {
		return 0, false
	}
	limit := int64(baseMemory) + int64(cfg.PasswordHashers)*password.Memory
	debug.SetMemoryLimit(limit)
	return limit, true
}

func serve(ctx context.Context, cfg config.Config, stderr io.Writer, getenv func(string) (string, bool)) (err error) {
	log := newLogger(stderr, cfg.LogLevel)
	if limit, set := memoryLimit(cfg, getenv); set {
		log.Info("Go soft memory limit set", "bytes", limit, "hint", "set GOMEMLIMIT to choose another")
	}
	var tlsConf *tls.Config
	if cfg.TLSCert != "" {
		var err error
		if tlsConf, err = httpapi.TLSConfig(cfg.TLSCert, cfg.TLSKey); err != nil {
			return err
		}
		pins, err := httpapi.Pins(tlsConf)
		if err != nil {
			return err
		}
		// Edges that pin this control plane list the leaf's pin (or a
		// CA's, further down the chain) and a backup's in
		// CODEX_CONTROLPLANE_PINS.
		log.Info("TLS certificate key pins, leaf first: for the edges' CODEX_CONTROLPLANE_PINS, with a backup key's pin", "pin", pins[0], "chain_pins", pins[1:])
	}
	// Refuse a plain non-loopback listener before starting anything.
	ln, err := httpapi.Listen(cfg.ControlplaneListen, tlsConf)
	if err != nil {
		return err
	}
	defer func() { _ = ln.Close() }() // for the early returns: serving closes it

	store, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeStore(store, &err)
	auth, seal, err := openAuthority(ctx, cfg, store, log)
	if err != nil {
		return err
	}

	natsURL := cfg.NATSURL
	if natsURL == "" {
		emb, err := natsbus.StartEmbedded(auth, natsbus.EmbeddedConfig{Dir: filepath.Join(cfg.DataDir, "nats"), Listen: cfg.NATSListen, TLS: tlsConf,
			MaxConnections: cfg.NATSMaxConnections, MaxStorage: cfg.NATSAccountMaxStorage})
		if err != nil {
			return err
		}
		defer emb.Shutdown()
		natsURL = emb.ClientURL()
		log.Info("embedded NATS started", "url", natsURL)
	}
	sysCreds, err := auth.SystemCreds()
	if err != nil {
		return err
	}
	var natsTLS []nats.Option
	if tlsConf != nil {
		// The embedded server presents CODEX_TLS_CERT, which may be
		// self-signed: trust it besides the system roots.
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if pem, err := os.ReadFile(cfg.TLSCert); err == nil {
			pool.AppendCertsFromPEM(pem)
		}
		natsTLS = append(natsTLS, nats.Secure(&tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool}))
	}
	sys, err := connect(natsURL, sysCreds, "codex-controlplane-sys", log, natsTLS...)
	if err != nil {
		return err
	}
	defer sys.Close()
	svcCreds, err := auth.ServiceCreds()
	if err != nil {
		return err
	}
	if cfg.NATSCreds != "" {
		if svcCreds, err = os.ReadFile(cfg.NATSCreds); err != nil {
			return fmt.Errorf("read nats creds: %w", err)
		}
	}
	svc, err := connect(natsURL, svcCreds, "codex-controlplane", log, natsTLS...)
	if err != nil {
		return err
	}
	defer svc.Close()
	accounts := &natsbus.Accounts{Auth: auth, Sys: sys, Log: log}
	if err := accounts.Sync(ctx); err != nil {
		return err
	}
	connLimit := &natsbus.EdgeConnLimit{Sys: sys, Account: auth.IngestAccount(), Max: cfg.NATSEdgeMaxConnections, Log: log}
	if err := connLimit.Start(); err != nil {
		return err
	}
	defer connLimit.Stop()

	js, err := jetstream.New(svc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	ing := &ingest.Ingester{Store: store, JS: js, Log: log, Limits: ingest.Limits{
		MaxBytes: cfg.NATSOrgMaxBytes, MaxAge: cfg.NATSStreamMaxAge, MaxPendingPerEdge: cfg.NATSEdgeMaxPending,
		Replicas: cfg.NATSStreamReplicas}}
	if cfg.NATSURL == "" {
		ing.ReconcileEvery = -1 // alone on the embedded server
	}
	if err := ing.Setup(ctx, auth.Orgs()); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Other instances' changes of the ingest account reach the servers
	// within natsbus.DefaultResyncEvery; the ingest consumes the streams
	// of orgs enrolled through them within ingest.DefaultReconcileEvery.
	// On its embedded server an instance is alone: nothing to follow.
	if cfg.NATSURL != "" {
		go accounts.Run(ctx)
	}
	ingestDone := make(chan error, 1)
	go func() { ingestDone <- ing.Run(ctx) }()
	go prune(ctx, store, controlplane.Retention{Minute: cfg.RetainMinutes, Hour: cfg.RetainHours, Day: cfg.RetainDays}, log)
	go expireAccess(ctx, store, log)

	publicURL := cfg.NATSPublicURL
	if publicURL == "" {
		publicURL = natsURL
	}
	enrollSvc := &enroll.Service{Store: store, Accounts: accounts, Streams: ing, NATSURL: publicURL}
	// The session keys live in the store, sealed, so that every instance
	// of the control plane accepts every session (the files of earlier
	// versions are taken over once).
	key, err := dashboard.SharedKey(ctx, store, seal, "dashboard-session", filepath.Join(cfg.DataDir, "dashboard", "session.key"))
	if err != nil {
		return err
	}
	staffKey, err := dashboard.SharedKey(ctx, store, seal, "staff-session", filepath.Join(cfg.DataDir, "dashboard", "staff-session.key"))
	if err != nil {
		return err
	}
	dash, err := dashboard.New(dashboard.Config{Store: store, Enroll: enrollSvc, Key: key, Log: log,
		LoginRate: cfg.LoginRate, LoginBurst: cfg.LoginBurst, PasswordHashers: cfg.PasswordHashers, PasswordHashWait: cfg.PasswordHashWait,
		StaffKey: staffKey, Sealer: seal, IngestStats: ing.Stats})
	if err != nil {
		return err
	}
	api := &httpapi.API{
		Enroll:    enrollSvc,
		Dashboard: dash,
		Log:       log,
		Ready: func(ctx context.Context) error {
			if !svc.IsConnected() || !sys.IsConnected() {
				return errors.New("nats disconnected")
			}
			return store.Ping(ctx)
		},
	}
	scheme := "http"
	if tlsConf != nil {
		scheme = "https"
	}
	log.Info("codex-controlplane listening", "addr", ln.Addr().String(), "tls", tlsConf != nil,
		"dashboard", scheme+"://"+ln.Addr().String()+"/")
	err = httpapi.Serve(ctx, ln, api.Handler())
	cancel()
	if ierr := <-ingestDone; err == nil {
		err = ierr
	}
	st := ing.Stats()
	log.Info("codex-controlplane stopped", "stored", st.Stored, "duplicates", st.Duplicates, "errors", st.Errors)
	return err
}

func connect(url string, creds []byte, name string, log *slog.Logger, extra ...nats.Option) (*nats.Conn, error) {
	opt, err := natsbus.Creds(creds)
	if err != nil {
		return nil, err
	}
	opts := append([]nats.Option{opt, nats.Name(name), nats.CustomInboxPrefix("_CODEX_CP"), nats.MaxReconnects(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: closed on purpose
				log.Warn("nats disconnected", "conn", name, "err", err)
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) { log.Info("nats reconnected", "conn", name) })}, extra...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats as %s: %w", name, err)
	}
	return nc, nil
}

// ExpireEvery is how often serve ends break-glass grants past their
// expiry (and requests unapproved for controlplane.RequestTTL), logging
// each in its org's access log. A grant past its expiry is refused at once
// anyway: reads check it.
const ExpireEvery = time.Minute

func expireAccess(ctx context.Context, store controlplane.Store, log *slog.Logger) {
	t := time.NewTicker(ExpireEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := store.ExpireAccess(ctx, time.Now().UTC())
		switch {
		case err != nil && ctx.Err() == nil:
			log.Error("expire break-glass access", "err", err)
		case n > 0:
			log.Info("break-glass access expired", "ended", n)
		}
	}
}

// prune applies retention hourly.
func prune(ctx context.Context, store controlplane.Store, r controlplane.Retention, log *slog.Logger) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if err := store.Prune(ctx, r, time.Now().UTC()); err != nil && ctx.Err() == nil {
			log.Error("prune usage", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
