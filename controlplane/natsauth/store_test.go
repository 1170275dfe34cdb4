package natsauth_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/persiv/codex/controlplane/natsauth"
	"github.com/persiv/codex/controlplane/sealer"
	"github.com/persiv/codex/controlplane/store/postgres"
	"github.com/persiv/codex/controlplane/store/postgres/pgtest"
	"github.com/persiv/codex/controlplane/store/sqlite"
)

// sharedStore is one database that two control plane instances open
// each with its own connections, and a scan of everything it holds.
type sharedStore struct {
	a, b natsauth.Store
	// scan fails the test for a seed in the clear anywhere in the store.
	scan func(t *testing.T)
}

var stores = []struct {
	name string
	open func(t *testing.T) sharedStore
}{
	{"SQLite", func(t *testing.T) sharedStore {
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
		return sharedStore{a: ss[0], b: ss[1], scan: func(t *testing.T) {
			t.Helper()
			n := 0
			for _, p := range []string{path, path + "-wal"} {
				b, err := os.ReadFile(p)
				if err != nil {
					continue
				}
				n += len(b)
				if seedRE.Match(b) {
					t.Errorf("%s holds a NATS seed in the clear", filepath.Base(p))
				}
			}
			if n == 0 {
				t.Fatal("no store file scanned")
			}
		}}
	}},
	{"Postgres", func(t *testing.T) sharedStore {
		owner, app := pgtest.FreshDB(t)
		var ss [2]natsauth.Store
		for i := range ss {
			st, err := postgres.Open(context.Background(), app)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = st.Close() })
			ss[i] = st
		}
		return sharedStore{a: ss[0], b: ss[1], scan: func(t *testing.T) {
			t.Helper()
			ctx := context.Background()
			conn, err := pgx.Connect(ctx, owner)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			n := 0
			for _, q := range []string{`SELECT name::bytea, sealed FROM deployment_secrets`, `SELECT org::bytea, sealed FROM nats_org_keys`, `SELECT account::bytea, jwt::bytea FROM nats_accounts`} {
				rows, err := conn.Query(ctx, q)
				if err != nil {
					t.Fatal(err)
				}
				for rows.Next() {
					var k, v []byte
					if err := rows.Scan(&k, &v); err != nil {
						t.Fatal(err)
					}
					n++
					if seedRE.Match(k) || seedRE.Match(v) {
						t.Errorf("row %q (%s) holds a NATS seed in the clear", k, q)
					}
				}
				if err := rows.Err(); err != nil {
					t.Fatal(err)
				}
			}
			if n == 0 {
				t.Fatal("no row scanned")
			}
		}}
	}},
}

func openOn(t *testing.T, st natsauth.Store, s *sealer.Sealer) *natsauth.Authority {
	t.Helper()
	// A directory of its own, as each instance has: no files in it.
	a, err := natsauth.Open(context.Background(), filepath.Join(t.TempDir(), "keys"), natsauth.Options{Sealer: s, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// sameIdentity fails the test unless a and b have the same operator and
// accounts.
func sameIdentity(t *testing.T, a, b *natsauth.Authority) {
	t.Helper()
	oa, err := jwt.DecodeOperatorClaims(a.OperatorJWT())
	if err != nil {
		t.Fatal(err)
	}
	ob, err := jwt.DecodeOperatorClaims(b.OperatorJWT())
	if err != nil {
		t.Fatal(err)
	}
	if oa.Subject != ob.Subject || a.SystemAccount() != b.SystemAccount() || a.IngestAccount() != b.IngestAccount() {
		t.Fatalf("instances differ: operator %s/%s, system %s/%s, ingest %s/%s", oa.Subject, ob.Subject, a.SystemAccount(), b.SystemAccount(), a.IngestAccount(), b.IngestAccount())
	}
}

func userPub(t *testing.T) string {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	return pub
}

func ingestClaims(t *testing.T, a *natsauth.Authority) *jwt.AccountClaims {
	t.Helper()
	c, err := jwt.DecodeAccountClaims(a.IngestJWT())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestInstancesShareSeeds: instances starting at once on an empty store
// end up with the same operator and accounts, sealed in the store.
func TestInstancesShareSeeds(t *testing.T) {
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			ss := st.open(t)
			s := newSealer(t)
			var (
				wg   sync.WaitGroup
				auth [2]*natsauth.Authority
				errs [2]error
			)
			for i, store := range []natsauth.Store{ss.a, ss.b} {
				wg.Go(func() {
					auth[i], errs[i] = natsauth.Open(context.Background(), filepath.Join(t.TempDir(), "keys"), natsauth.Options{Sealer: s, Store: store})
				})
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			sameIdentity(t, auth[0], auth[1])
			if auth[0].IngestJWT() != auth[1].IngestJWT() {
				t.Error("instances hold different ingest account claims")
			}
			for _, name := range []string{"nats/operator", "nats/system", "nats/ingest"} {
				if b, err := ss.a.DeploymentSecret(context.Background(), name); err != nil || !sealer.IsSealed(b) {
					t.Errorf("%s: %v, want stored sealed", name, err)
				}
			}
			ss.scan(t)
			// Another key cannot open them.
			if _, err := natsauth.Open(context.Background(), t.TempDir(), natsauth.Options{Sealer: newSealer(t), Store: ss.a}); err == nil {
				t.Error("opened the stored seeds with another key")
			}
		})
	}
}

// TestConcurrentChangesKept: orgs added and edges revoked through two
// instances at once all end up in the claims: each change applies to the
// latest stored claims, not to the instance's copy in memory.
func TestConcurrentChangesKept(t *testing.T) {
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			ss := st.open(t)
			s := newSealer(t)
			ctx := context.Background()
			inst := []*natsauth.Authority{openOn(t, ss.a, s), openOn(t, ss.b, s)}
			const n = 12
			var (
				wg   sync.WaitGroup
				orgs []string
				pubs []string
			)
			for i := range n {
				orgs = append(orgs, fmt.Sprintf("org_%02d", i))
				pubs = append(pubs, userPub(t))
			}
			for i := range n {
				a := inst[i%2]
				wg.Go(func() {
					if changed, err := a.EnsureOrg(ctx, orgs[i]); err != nil || !changed {
						t.Errorf("EnsureOrg %s: %v, %v", orgs[i], changed, err)
					}
				})
				wg.Go(func() {
					if err := a.Revoke(ctx, pubs[i], time.Now()); err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			for i, a := range inst {
				if err := a.Refresh(ctx); err != nil {
					t.Fatal(err)
				}
				if got := a.Orgs(); !slices.Equal(got, orgs) {
					t.Errorf("instance %d: orgs %v, want %v: a change was lost", i, got, orgs)
				}
				c := ingestClaims(t, a)
				for _, pub := range pubs {
					if _, ok := c.Revocations[pub]; !ok {
						t.Errorf("instance %d: revocation of %s lost", i, pub)
					}
				}
			}
			if inst[0].IngestJWT() != inst[1].IngestJWT() {
				t.Error("instances disagree after refreshing")
			}
			ss.scan(t)
		})
	}
}

// TestOrgAcrossInstances: an org added through one instance mints on the
// other, and one removed through the other is gone for both, its key
// deleted.
func TestOrgAcrossInstances(t *testing.T) {
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			ss := st.open(t)
			s := newSealer(t)
			ctx := context.Background()
			a, b := openOn(t, ss.a, s), openOn(t, ss.b, s)
			if _, err := a.EnsureOrg(ctx, "org_a"); err != nil {
				t.Fatal(err)
			}
			if _, err := a.EnsureOrg(ctx, "org_keep"); err != nil {
				t.Fatal(err)
			}
			// b read the claims before org_a was added.
			userJWT, err := b.MintEdge(ctx, "org_a", "edge_1", userPub(t))
			if err != nil {
				t.Fatalf("mint on the other instance: %v", err)
			}
			uc, err := jwt.DecodeUserClaims(userJWT)
			if err != nil {
				t.Fatal(err)
			}
			if !ingestClaims(t, a).SigningKeys.Contains(uc.Issuer) {
				t.Fatal("the edge JWT minted on b is signed by a key the account does not hold")
			}
			if changed, err := b.EnsureOrg(ctx, "org_a"); err != nil || changed {
				t.Fatalf("EnsureOrg on b of an org added on a: %v, %v", changed, err)
			}

			if changed, err := b.RemoveOrg(ctx, "org_a", nil, time.Now()); err != nil || !changed {
				t.Fatalf("RemoveOrg: %v, %v", changed, err)
			}
			if _, err := ss.a.NATSOrgKey(ctx, "org_a"); err == nil {
				t.Error("the removed org's key is still stored")
			}
			if _, err := a.MintEdge(ctx, "org_a", "edge_2", userPub(t)); err == nil {
				t.Error("a minted for an org removed through b")
			}
			// A change on a keeps b's removal.
			if _, err := a.EnsureOrg(ctx, "org_b"); err != nil {
				t.Fatal(err)
			}
			if got := a.Orgs(); !slices.Equal(got, []string{"org_b", "org_keep"}) {
				t.Errorf("orgs on a: %v", got)
			}
			if err := b.Refresh(ctx); err != nil {
				t.Fatal(err)
			}
			if got := b.Orgs(); !slices.Equal(got, []string{"org_b", "org_keep"}) {
				t.Errorf("orgs on b: %v", got)
			}
			ss.scan(t)
		})
	}
}

// TestFilesTakenOver: the authority an earlier version kept in files
// (sealed, or plaintext older still) becomes the store's, once: later
// instances with other files use the store's.
func TestFilesTakenOver(t *testing.T) {
	for _, plaintext := range []bool{false, true} {
		for _, st := range stores {
			t.Run(fmt.Sprintf("%s/plaintext=%v", st.name, plaintext), func(t *testing.T) {
				ss := st.open(t)
				s := newSealer(t)
				ctx := context.Background()
				dir := t.TempDir()
				old := open(t, dir, s)
				if _, err := old.EnsureOrg(ctx, "org_a"); err != nil {
					t.Fatal(err)
				}
				revoked := userPub(t)
				if err := old.Revoke(ctx, revoked, time.Now()); err != nil {
					t.Fatal(err)
				}
				want := identity(t, old)
				if plaintext {
					unseal(t, dir, s)
				}

				a, err := natsauth.Open(ctx, dir, natsauth.Options{Sealer: s, Store: ss.a})
				if err != nil {
					t.Fatal(err)
				}
				if identity(t, a) != want {
					t.Fatal("the store's authority is not the files'")
				}
				if _, ok := ingestClaims(t, a).Revocations[revoked]; !ok {
					t.Fatal("revocation lost in the import")
				}
				if _, err := a.MintEdge(ctx, "org_a", "edge_1", userPub(t)); err != nil {
					t.Fatalf("mint for an org of the files: %v", err)
				}
				scan(t, dir) // plaintext seeds sealed and removed
				ss.scan(t)

				// Another instance with other files: the store's authority.
				other := t.TempDir()
				open(t, other, s)
				b, err := natsauth.Open(ctx, other, natsauth.Options{Sealer: s, Store: ss.b})
				if err != nil {
					t.Fatal(err)
				}
				sameIdentity(t, a, b)
				if got := b.Orgs(); !slices.Equal(got, []string{"org_a"}) {
					t.Fatalf("orgs %v", got)
				}
			})
		}
	}
}
