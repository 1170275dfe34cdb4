// Package natsbus runs the control plane's NATS side: an in-process
// nats-server with JetStream in operator/JWT mode for the embedded
// default, client connections from creds held in memory, and pushing
// account JWT updates (new org signing keys, revocations) to the servers.
package natsbus

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/persiv/codex/controlplane/natsauth"
	"github.com/persiv/codex/shared/wire"
)

// EmbeddedConfig configures the in-process server.
type EmbeddedConfig struct {
	// Dir holds JetStream's store and the account resolver's JWTs.
	Dir string
	// Listen is host:port; port 0 picks a free one. Outside loopback TLS
	// is required.
	Listen string
	// TLS, when set, is required of every client (TLS 1.3 only).
	TLS *tls.Config
	// MaxConnections bounds client connections. Default
	// DefaultMaxConnections.
	MaxConnections int
	// MaxStorage bounds JetStream's file storage. Default
	// natsauth.DefaultMaxStorage.
	MaxStorage int64
	// Cluster, when set, makes the server one node of a JetStream
	// cluster. The control plane runs its embedded server alone (a
	// production cluster runs nats-server with nats-config's output);
	// tests run a cluster in process.
	Cluster *ClusterConfig
}

// ClusterConfig makes an embedded server a node of a JetStream cluster.
// Routes are not authenticated: they listen on loopback in tests.
type ClusterConfig struct {
	// ServerName names the node, unique in the cluster: JetStream's
	// placement and leaders go by it.
	ServerName string
	// Name is the cluster's name, the same on every node.
	Name string
	// Listen is the route listener's host:port.
	Listen string
	// Routes are the route URLs (nats://host:port) of every node; one
	// to itself is ignored.
	Routes []string
}

// DefaultMaxConnections is EmbeddedConfig.MaxConnections's default.
const DefaultMaxConnections = 4096

// Embedded is a running in-process nats-server.
type Embedded struct {
	srv *server.Server
}

// StartEmbedded starts a nats-server trusting auth's operator, with the
// system and ingest accounts preloaded into a directory resolver and
// JetStream enabled. No anonymous user exists in operator mode.
func StartEmbedded(auth *natsauth.Authority, cfg EmbeddedConfig) (*Embedded, error) {
	host, portStr, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("nats listen address: %w", err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("nats listen port: %w", err)
	}
	if port == 0 {
		// nats-server reads 0 as its default port, 4222.
		port = server.RANDOM_PORT
	}
	if !IsLoopback(host) && cfg.TLS == nil {
		return nil, errors.New("nats: listening outside loopback requires TLS")
	}
	op, err := jwt.DecodeOperatorClaims(auth.OperatorJWT())
	if err != nil {
		return nil, fmt.Errorf("decode operator jwt: %w", err)
	}
	resolverDir := filepath.Join(cfg.Dir, "accounts")
	if err := os.MkdirAll(resolverDir, 0o700); err != nil {
		return nil, fmt.Errorf("nats resolver dir: %w", err)
	}
	res, err := server.NewDirAccResolver(resolverDir, 0, 2*time.Minute, server.NoDelete)
	if err != nil {
		return nil, fmt.Errorf("nats resolver: %w", err)
	}
	for pub, j := range map[string]string{auth.SystemAccount(): auth.SystemJWT(), auth.IngestAccount(): auth.IngestJWT()} {
		if err := res.Store(pub, j); err != nil {
			return nil, fmt.Errorf("preload account: %w", err)
		}
	}
	if cfg.MaxConnections <= 0 {
		cfg.MaxConnections = DefaultMaxConnections
	}
	if cfg.MaxStorage <= 0 {
		cfg.MaxStorage = natsauth.DefaultMaxStorage
	}
	opts := &server.Options{
		ServerName:        "codex-controlplane",
		MaxConn:           cfg.MaxConnections,
		JetStreamMaxStore: cfg.MaxStorage,
		Host:              host,
		Port:              port,
		JetStream:         true,
		StoreDir:          filepath.Join(cfg.Dir, "jetstream"),
		TrustedOperators:  []*jwt.OperatorClaims{op},
		SystemAccount:     auth.SystemAccount(),
		AccountResolver:   res,
		MaxPayload:        wire.MaxBatchBytes,
		NoSigs:            true,
		NoLog:             true,
	}
	if c := cfg.Cluster; c != nil {
		if err := clusterOptions(opts, c); err != nil {
			return nil, err
		}
	}
	if cfg.TLS != nil {
		opts.TLSConfig = cfg.TLS.Clone()
		opts.TLSConfig.MinVersion = tls.VersionTLS13
		opts.TLS, opts.TLSVerify = true, false
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats server: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("nats server did not become ready (is %s free?)", cfg.Listen)
	}
	return &Embedded{srv: srv}, nil
}

func clusterOptions(opts *server.Options, c *ClusterConfig) error {
	if c.ServerName == "" || c.Name == "" || len(c.Routes) == 0 {
		return errors.New("nats cluster: a server name, a cluster name and routes are required")
	}
	host, portStr, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("nats cluster listen address: %w", err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port <= 0 {
		return fmt.Errorf("nats cluster listen port %q: the other nodes' routes need a fixed port", portStr)
	}
	if !IsLoopback(host) {
		return errors.New("nats cluster: routes are not authenticated, listen on loopback")
	}
	opts.ServerName = c.ServerName
	opts.Cluster = server.ClusterOpts{Name: c.Name, Host: host, Port: port}
	for _, r := range c.Routes {
		u, err := url.Parse(r)
		if err != nil || u.Host == "" {
			return fmt.Errorf("nats cluster route %q is not a nats://host:port URL", r)
		}
		opts.Routes = append(opts.Routes, u)
	}
	return nil
}

// ClientURL is the URL clients connect to.
func (e *Embedded) ClientURL() string { return e.srv.ClientURL() }

// Name is the server's name: JetStream names stream and consumer leaders
// by it.
func (e *Embedded) Name() string { return e.srv.Name() }

// JetStreamCurrent reports whether the server's JetStream is ready: alone,
// enabled; in a cluster, its meta group has a leader it is current with.
func (e *Embedded) JetStreamCurrent() bool {
	return e.srv.JetStreamEnabled() && e.srv.JetStreamIsCurrent()
}

// Shutdown stops the server and waits for it.
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}

// IsLoopback reports whether host (a name or an IP) is a loopback
// address. Only "localhost" is trusted among names.
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Creds returns a connect option authenticating with a creds file's
// content, kept in memory.
func Creds(creds []byte) (nats.Option, error) {
	userJWT, err := jwt.ParseDecoratedJWT(creds)
	if err != nil {
		return nil, fmt.Errorf("parse creds jwt: %w", err)
	}
	kp, err := jwt.ParseDecoratedNKey(creds)
	if err != nil {
		return nil, fmt.Errorf("parse creds seed: %w", err)
	}
	return JWTAndKey(userJWT, kp), nil
}

// JWTAndKey returns a connect option authenticating as a user JWT whose
// nkey is kp.
func JWTAndKey(userJWT string, kp nkeys.KeyPair) nats.Option {
	return nats.UserJWT(
		func() (string, error) { return userJWT, nil },
		func(nonce []byte) ([]byte, error) { return kp.Sign(nonce) },
	)
}

// PushAccount sends an account JWT to the servers over a system account
// connection and waits for one to accept it.
func PushAccount(ctx context.Context, sys *nats.Conn, accountJWT string) error {
	msg, err := sys.RequestWithContext(ctx, "$SYS.REQ.CLAIMS.UPDATE", []byte(accountJWT))
	if err != nil {
		return fmt.Errorf("push account jwt: %w", err)
	}
	var resp struct {
		Data  *struct{ Code int } `json:"data"`
		Error *struct {
			Code        int    `json:"code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return fmt.Errorf("push account jwt: bad response: %w", err)
	}
	if resp.Error != nil {
		return fmt.Errorf("push account jwt: server refused (%d): %s", resp.Error.Code, resp.Error.Description)
	}
	return nil
}

// DefaultResyncEvery is Accounts.ResyncEvery's default.
const DefaultResyncEvery = 30 * time.Second

// maxPushRounds bounds how many times one push follows newer JWTs that
// other instances stored meanwhile; Run's next round takes over.
const maxPushRounds = 8

// Accounts applies changes of the ingest account to the running servers:
// each change is saved by the authority (in the store every instance
// shares), then pushed. A push that failed is retried with the next
// change, so a saved change is never left unpushed; this instance's
// changes and pushes are serialised, so an edge minted after EnsureOrg
// returns is known to the servers.
//
// Instances push in any order, and a server keeps the account JWT with
// the later issued-at, in seconds, or the one it received last when two
// were issued in the same second. So after each push the stored JWT is
// read again and pushed too when another instance stored a newer one
// meanwhile: the last push of every instance is then of the stored latest,
// and a server that received them all holds it. Servers of a cluster
// also pass updates on to one another, in their own order: Run pushes the
// stored latest every ResyncEvery, which bounds how long any server can
// hold an older JWT (two changes in one second on two instances).
type Accounts struct {
	Auth *natsauth.Authority
	Sys  *nats.Conn // a system account connection
	// ResyncEvery is how often Run reads the stored ingest account and
	// pushes it. Default DefaultResyncEvery.
	ResyncEvery time.Duration
	// Log reports Run's failed rounds. Nil: slog.Default().
	Log *slog.Logger

	mu      sync.Mutex
	pending bool // a saved change has not been pushed
}

// Sync reads the stored ingest account JWT and pushes it, as after a
// start against an external NATS that may hold an older one.
func (a *Accounts) Sync(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.Auth.Refresh(ctx); err != nil {
		a.pending = true
		return err
	}
	return a.pushLocked(ctx)
}

// Run calls Sync every ResyncEvery until ctx ends: changes made by other
// instances reach the servers even when a push of theirs was lost or
// overtaken, and Auth's orgs follow the store's.
func (a *Accounts) Run(ctx context.Context) {
	every := a.ResyncEvery
	if every <= 0 {
		every = DefaultResyncEvery
	}
	log := a.Log
	if log == nil {
		log = slog.Default()
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := a.Sync(ctx); err != nil && ctx.Err() == nil {
			log.Warn("nats: resync of the ingest account failed; retried", "err", err, "every", every)
		}
	}
}

// pushLocked pushes the ingest account JWT in memory, then the stored
// latest as long as another instance stored a newer one meanwhile.
func (a *Accounts) pushLocked(ctx context.Context) error {
	a.pending = true
	for range maxPushRounds {
		j := a.Auth.IngestJWT()
		if err := PushAccount(ctx, a.Sys, j); err != nil {
			return err
		}
		if err := a.Auth.Refresh(ctx); err != nil {
			return err
		}
		if a.Auth.IngestJWT() == j {
			a.pending = false
			return nil
		}
	}
	// Still changing: pushed again with the next change or by Run.
	return nil
}

// EnsureOrg makes sure org has its scoped signing key on the servers.
func (a *Accounts) EnsureOrg(ctx context.Context, orgID string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	changed, err := a.Auth.EnsureOrg(ctx, orgID)
	if err != nil {
		return err
	}
	if changed || a.pending {
		return a.pushLocked(ctx)
	}
	return nil
}

// Revoke revokes an edge's user key on the servers: they refuse its next
// connection and close the current ones.
func (a *Accounts) Revoke(ctx context.Context, userPub string, at time.Time) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.Auth.Revoke(ctx, userPub, at); err != nil {
		return err
	}
	return a.pushLocked(ctx)
}

// RemoveOrg revokes the user keys of an org's edges and removes the org's
// signing key on the servers: they close the edges' connections and refuse
// their next ones.
func (a *Accounts) RemoveOrg(ctx context.Context, orgID string, userPubs []string, at time.Time) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, err := a.Auth.RemoveOrg(ctx, orgID, userPubs, at); err != nil {
		return err
	}
	return a.pushLocked(ctx)
}

// MintEdge returns an edge's user JWT; see natsauth.Authority.MintEdge.
func (a *Accounts) MintEdge(ctx context.Context, orgID, edgeID, userPub string) (string, error) {
	return a.Auth.MintEdge(ctx, orgID, edgeID, userPub)
}
