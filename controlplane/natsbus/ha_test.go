package natsbus_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/persiv/codex/controlplane/natsauth"
	"github.com/persiv/codex/controlplane/natsbus"
	"github.com/persiv/codex/controlplane/store/postgres"
	"github.com/persiv/codex/controlplane/store/postgres/pgtest"
	"github.com/persiv/codex/controlplane/store/sqlite"
	"github.com/persiv/codex/shared/wire"
)

// instance is one control plane instance's NATS side.
type instance struct {
	auth *natsauth.Authority
	acc  *natsbus.Accounts
}

func connectCreds(t *testing.T, url string, creds func() ([]byte, error)) *nats.Conn {
	t.Helper()
	c, err := creds()
	if err != nil {
		t.Fatal(err)
	}
	opt, err := natsbus.Creds(c)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(url, opt, nats.CustomInboxPrefix("_CODEX_CP"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// haEdge is an edge of an org with its key and a JWT minted by one
// instance.
type haEdge struct {
	org, id string
	kp      nkeys.KeyPair
	jwt     string
}

func mintEdge(t *testing.T, in instance, org, id string) haEdge {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	j, err := in.acc.MintEdge(context.Background(), org, id, pub)
	if err != nil {
		t.Fatal(err)
	}
	return haEdge{org: org, id: id, kp: kp, jwt: j}
}

func (e haEdge) pub() string { p, _ := e.kp.PublicKey(); return p }

// dial connects as the edge and reports the server's answer.
func (e haEdge) dial(url string) error {
	nc, err := nats.Connect(url, natsbus.JWTAndKey(e.jwt, e.kp), nats.CustomInboxPrefix(natsauth.InboxPrefix(e.id)), nats.NoReconnect())
	if err != nil {
		return err
	}
	nc.Close()
	return nil
}

// publish connects as the edge and publishes on its subject, returning
// the connection's error, or the message svc received.
func (e haEdge) publish(url string, inbox *nats.Subscription) error {
	nc, err := nats.Connect(url, natsbus.JWTAndKey(e.jwt, e.kp), nats.CustomInboxPrefix(natsauth.InboxPrefix(e.id)), nats.NoReconnect())
	if err != nil {
		return err
	}
	defer nc.Close()
	if err := nc.Publish(wire.SubjectPrefix+"."+e.org+"."+e.id, []byte(e.id)); err != nil {
		return err
	}
	if err := nc.Flush(); err != nil {
		return err
	}
	_, err = inbox.NextMsg(30 * time.Second) // bounds a hang only
	return err
}

// TestTwoInstancesOneNATS: two control plane instances on one store push
// to one NATS server. An edge enrolled through A publishes; B revokes it
// and the server refuses its next connection, while the org signing key
// A added (which B had not read) is still on the server; a change stored
// by one instance without a push reaches the servers with the other's
// next sync.
func TestTwoInstancesOneNATS(t *testing.T) {
	for _, tc := range []struct {
		name  string
		store func(t *testing.T) (a, b natsauth.Store)
	}{
		{"SQLite", func(t *testing.T) (natsauth.Store, natsauth.Store) {
			path := filepath.Join(t.TempDir(), "cp.db")
			var ss [2]natsauth.Store
			for i := range ss {
				st, err := sqlite.Open(context.Background(), path)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = st.Close() })
				ss[i] = st
			}
			return ss[0], ss[1]
		}},
		{"Postgres", func(t *testing.T) (natsauth.Store, natsauth.Store) {
			_, app := pgtest.FreshDB(t)
			var ss [2]natsauth.Store
			for i := range ss {
				st, err := postgres.Open(context.Background(), app)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = st.Close() })
				ss[i] = st
			}
			return ss[0], ss[1]
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			seal := mustSealer(t, dir)
			sa, sb := tc.store(t)
			var in [2]instance
			for i, st := range []natsauth.Store{sa, sb} {
				auth, err := natsauth.Open(ctx, filepath.Join(t.TempDir(), "keys"), natsauth.Options{Sealer: seal, Store: st})
				if err != nil {
					t.Fatal(err)
				}
				in[i].auth = auth
			}
			emb, err := natsbus.StartEmbedded(in[0].auth, natsbus.EmbeddedConfig{Dir: filepath.Join(dir, "nats"), Listen: "127.0.0.1:0"})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(emb.Shutdown)
			url := emb.ClientURL()
			for i := range in {
				in[i].acc = &natsbus.Accounts{Auth: in[i].auth, Sys: connectCreds(t, url, in[i].auth.SystemCreds)}
			}
			a, b := in[0], in[1]
			svc := connectCreds(t, url, b.auth.ServiceCreds)
			inbox, err := svc.SubscribeSync(wire.SubjectPrefix + ".>")
			if err != nil {
				t.Fatal(err)
			}
			if err := svc.Flush(); err != nil {
				t.Fatal(err)
			}

			if err := a.acc.EnsureOrg(ctx, "org_a"); err != nil {
				t.Fatal(err)
			}
			edge := mintEdge(t, a, "org_a", "edge_1")
			if err := edge.publish(url, inbox); err != nil {
				t.Fatalf("edge enrolled through A: %v", err)
			}
			// B has not read the claims since org_a was added.
			if err := b.acc.EnsureOrg(ctx, "org_b"); err != nil {
				t.Fatal(err)
			}
			if err := b.acc.Revoke(ctx, edge.pub(), time.Now()); err != nil {
				t.Fatal(err)
			}
			if err := edge.dial(url); err == nil {
				t.Fatal("the edge revoked through B connected again")
			}
			for _, e := range []haEdge{mintEdge(t, a, "org_a", "edge_2"), mintEdge(t, b, "org_a", "edge_3"), mintEdge(t, a, "org_b", "edge_4")} {
				if err := e.publish(url, inbox); err != nil {
					t.Fatalf("%s of %s after B's change: %v (org key from A lost?)", e.id, e.org, err)
				}
			}

			// Stored through B without a push (as when B's push was
			// lost): A's next sync pushes it.
			late := mintEdge(t, a, "org_a", "edge_5")
			if err := late.publish(url, inbox); err != nil {
				t.Fatal(err)
			}
			if err := b.auth.Revoke(ctx, late.pub(), time.Now()); err != nil {
				t.Fatal(err)
			}
			if err := a.acc.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			if err := late.dial(url); err == nil {
				t.Fatal("an edge revoked in the store connected after the other instance's sync")
			}
		})
	}
}
