// Package testenv starts, for tests, the control plane's real moving
// parts: a NATS authority, an in-process nats-server with JetStream on a
// random loopback port in t.TempDir(), a SQLite store, the enrollment
// service and the ingest consumer.
package testenv

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/persiv/codex/controlplane"
	"github.com/persiv/codex/controlplane/enroll"
	"github.com/persiv/codex/controlplane/ingest"
	"github.com/persiv/codex/controlplane/natsauth"
	"github.com/persiv/codex/controlplane/natsbus"
	"github.com/persiv/codex/controlplane/sealer"
	"github.com/persiv/codex/controlplane/store/postgres"
	"github.com/persiv/codex/controlplane/store/postgres/pgtest"
	"github.com/persiv/codex/controlplane/store/sqlite"
	"github.com/persiv/codex/shared/wire"
)

// Env is a running control plane.
type Env struct {
	Dir      string
	Sealer   *sealer.Sealer // seals the NATS seeds (a local key file in Dir)
	Auth     *natsauth.Authority
	NATS     *natsbus.Embedded
	Sys      *nats.Conn
	Service  *nats.Conn // the control plane's own ingest-account user
	Accounts *natsbus.Accounts
	Store    controlplane.Store
	Enroll   *enroll.Service
	Ingester *ingest.Ingester
	// PostgresOwner is the owner role's URL of the Postgres store, with
	// Options.Postgres.
	PostgresOwner string
}

// Options tweak an Env.
type Options struct {
	// Base, when set, is the store of the Env (e.g. PostgreSQL) instead
	// of a fresh SQLite one; the test closes it.
	Base controlplane.Store
	// Store replaces the store the ingest writes to.
	Store func(controlplane.Store) controlplane.Store
	// NoIngest leaves the consumer stopped.
	NoIngest bool
	// Limits bound the ingest streams.
	Limits ingest.Limits
	// Account bounds the ingest account's JetStream use.
	Account natsauth.Limits
	// EdgeMaxConns bounds each edge's connections (default
	// natsbus.DefaultEdgeMaxConnections).
	EdgeMaxConns int
	// Postgres puts the store on a fresh, migrated database of the dev
	// Postgres server (pgtest.FreshDB) instead of SQLite;
	// Env.PostgresOwner is its owner role's URL.
	Postgres bool
}

// New starts an Env that stops when the test ends.
func New(t testing.TB, o Options) *Env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	dir := t.TempDir()
	e := &Env{Dir: dir}
	var err error
	if e.Sealer, err = Sealer(dir); err != nil {
		t.Fatal(err)
	}
	if e.Auth, err = natsauth.Open(ctx, filepath.Join(dir, "nats-keys"), natsauth.Options{Sealer: e.Sealer, Limits: o.Account}); err != nil {
		t.Fatal(err)
	}
	if e.NATS, err = natsbus.StartEmbedded(e.Auth, natsbus.EmbeddedConfig{Dir: filepath.Join(dir, "nats"), Listen: "127.0.0.1:0"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.NATS.Shutdown)
	e.Sys = e.connect(t, e.Auth.SystemCreds)
	e.Service = e.connect(t, e.Auth.ServiceCreds)
	e.Accounts = &natsbus.Accounts{Auth: e.Auth, Sys: e.Sys}
	limit := &natsbus.EdgeConnLimit{Sys: e.Sys, Account: e.Auth.IngestAccount(), Max: o.EdgeMaxConns}
	if err := limit.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(limit.Stop)
	store := o.Base
	switch {
	case store != nil:
	case o.Postgres:
		var app string
		e.PostgresOwner, app = pgtest.FreshDB(t)
		pg, err := postgres.Open(ctx, app)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = pg.Close() })
		store = pg
	default:
		lite, err := sqlite.Open(ctx, filepath.Join(dir, "cp.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = lite.Close() })
		store = lite
	}
	e.Store = store
	ingestStore := controlplane.Store(store)
	if o.Store != nil {
		ingestStore = o.Store(store)
	}
	js, err := jetstream.New(e.Service)
	if err != nil {
		t.Fatal(err)
	}
	e.Ingester = &ingest.Ingester{Store: ingestStore, JS: js, Limits: o.Limits}
	if err := e.Ingester.Setup(ctx, e.Auth.Orgs()); err != nil {
		t.Fatal(err)
	}
	e.Enroll = &enroll.Service{Store: store, Accounts: e.Accounts, Streams: e.Ingester, NATSURL: e.NATS.ClientURL()}
	done := make(chan struct{})
	if o.NoIngest {
		close(done)
	} else {
		go func() {
			defer close(done)
			if err := e.Ingester.Run(ctx); err != nil {
				t.Error(err)
			}
		}()
	}
	t.Cleanup(func() { cancel(); <-done })
	return e
}

func (e *Env) connect(t testing.TB, creds func() ([]byte, error)) *nats.Conn {
	t.Helper()
	c, err := creds()
	if err != nil {
		t.Fatal(err)
	}
	opt, err := natsbus.Creds(c)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(e.NATS.ClientURL(), opt, nats.CustomInboxPrefix("_CODEX_CP"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// Sealer returns a sealer over a local key file in dir, made on first use:
// what tests give natsauth.Open.
func Sealer(dir string) (*sealer.Sealer, error) {
	kp, err := sealer.LoadOrCreateKeyFile(filepath.Join(dir, "secrets.key"))
	if err != nil {
		return nil, err
	}
	return sealer.New(kp), nil
}

// Org creates an org and returns its id.
func (e *Env) Org(t testing.TB) string {
	t.Helper()
	o := controlplane.Org{ID: controlplane.NewID("org"), Name: "Acme", CreatedAt: time.Now().UTC()}
	if err := e.Store.CreateOrg(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	return o.ID
}

// Edge is an enrolled edge with its private key.
type Edge struct {
	wire.EnrollResponse
	Key nkeys.KeyPair
}

// EnrollEdge enrolls a new edge into org the way codex-edge does.
func (e *Env) EnrollEdge(t testing.TB, orgID string) Edge {
	t.Helper()
	return EnrollEdge(t, e.Enroll, orgID)
}

// EnrollEdge enrolls a new edge into org through svc the way codex-edge
// does.
func EnrollEdge(t testing.TB, svc *enroll.Service, orgID string) Edge {
	t.Helper()
	ctx := context.Background()
	tok, err := svc.CreateToken(ctx, orgID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	resp, err := svc.Enroll(ctx, wire.EnrollRequest{Token: tok, PublicKey: pub, Name: "edge-1", Version: "0.1.0"})
	if err != nil {
		t.Fatal(err)
	}
	return Edge{EnrollResponse: resp, Key: kp}
}

// Connect connects as the edge, with the options codex-edge uses.
func (ed Edge) Connect(opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{natsbus.JWTAndKey(ed.UserJWT, ed.Key), nats.CustomInboxPrefix(ed.InboxPrefix), nats.NoReconnect()}, opts...)
	return nats.Connect(ed.NATSURL, opts...)
}

// JetStream connects as the edge until the test ends and returns its
// JetStream context, to publish batches as codex-edge does.
func (ed Edge) JetStream(t testing.TB) jetstream.JetStream {
	t.Helper()
	nc, err := ed.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// pollEvery is how often Eventually checks its condition.
const pollEvery = 5 * time.Millisecond

// Eventually polls cond until it holds and returns how long that took. It
// fails the test, naming what it waited for, once within has passed. The
// deadline only ends a test that would hang: it asserts no timing, unless
// the caller checks the duration returned. It is the control plane's one
// polling helper.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(pollEvery)
	}
	return time.Since(start)
}

// Cluster starts a JetStream cluster of n in-process nats-servers
// (node-0, node-1, …) trusting auth's operator, each with the system and
// ingest accounts preloaded into its own full resolver, its own store
// directory and random loopback ports, routed to one another. It returns
// once every node's JetStream is current with the cluster's meta leader;
// the nodes stop when the test ends.
func Cluster(t testing.TB, auth *natsauth.Authority, n int) []*natsbus.Embedded {
	t.Helper()
	// The routes name every node's route port before any node starts:
	// the ports are taken free and released just before.
	var routes, listens []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		listens = append(listens, ln.Addr().String())
		routes = append(routes, "nats://"+ln.Addr().String())
		if err := ln.Close(); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	nodes := make([]*natsbus.Embedded, n)
	for i := range nodes {
		name := fmt.Sprintf("node-%d", i)
		node, err := natsbus.StartEmbedded(auth, natsbus.EmbeddedConfig{Dir: filepath.Join(dir, name), Listen: "127.0.0.1:0",
			Cluster: &natsbus.ClusterConfig{ServerName: name, Name: "codex-test", Listen: listens[i], Routes: routes}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(node.Shutdown)
		nodes[i] = node
	}
	Eventually(t, 30*time.Second, "the JetStream cluster ready", func() bool {
		for _, node := range nodes {
			if !node.JetStreamCurrent() {
				return false
			}
		}
		return true
	})
	return nodes
}
