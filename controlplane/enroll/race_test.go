package enroll_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/persiv/codex/controlplane"
	"github.com/persiv/codex/controlplane/enroll"
	"github.com/persiv/codex/controlplane/ingest"
	"github.com/persiv/codex/controlplane/testenv"
	"github.com/persiv/codex/shared/wire"
)

// hookStore runs before ahead of its store's DeleteOrg.
type hookStore struct {
	controlplane.Store
	before func(orgID string)
}

func (s hookStore) DeleteOrg(ctx context.Context, d controlplane.OrgDeletion) (controlplane.OrgDeletion, error) {
	s.before(d.OrgID)
	return s.Store.DeleteOrg(ctx, d)
}

// hookAccounts runs before ahead of its accounts' MintEdge.
type hookAccounts struct {
	enroll.Accounts
	before func(orgID string)
}

func (a hookAccounts) MintEdge(ctx context.Context, orgID, edgeID, userPub string) (string, error) {
	a.before(orgID)
	return a.Accounts.MintEdge(ctx, orgID, edgeID, userPub)
}

// TestDeleteOrgRacingEnrollment: an enrollment that redeemed its token
// before the org's deletion cannot leave the deleted org a signing key in
// the ingest account, a sealed seed in the store or a usage stream,
// whichever side of the store's deletion its own steps fall on.
func TestDeleteOrgRacingEnrollment(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	gone := func(t *testing.T, orgID string) {
		t.Helper()
		if slices.Contains(env.Auth.Orgs(), orgID) {
			t.Errorf("the deleted org keeps a signing key in the ingest account")
		}
		if _, err := env.Store.NATSOrgKey(ctx, orgID); !errors.Is(err, controlplane.ErrNotFound) {
			t.Errorf("the deleted org's sealed seed: %v, want ErrNotFound", err)
		}
		js, err := jetstream.New(env.Service)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.Stream(ctx, ingest.StreamName(orgID)); !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Errorf("the deleted org's stream: %v, want ErrStreamNotFound", err)
		}
	}

	t.Run("enrollment's key added between removal and deletion", func(t *testing.T) {
		org := env.Org(t)
		svc := *env.Enroll
		// What a racing enrollment does after the first removal and
		// before the store's deletion commits.
		svc.Store = hookStore{Store: env.Store, before: func(orgID string) {
			if err := env.Enroll.Accounts.EnsureOrg(ctx, orgID); err != nil {
				t.Error(err)
			}
			if err := env.Enroll.Streams.EnsureOrg(ctx, orgID); err != nil {
				t.Error(err)
			}
		}}
		if _, err := svc.DeleteOrg(ctx, org, "usr_owner"); err != nil {
			t.Fatal(err)
		}
		gone(t, org)
	})

	t.Run("enrollment finishing after the deletion", func(t *testing.T) {
		org := env.Org(t)
		tok, err := env.Enroll.CreateToken(ctx, org, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		svc := *env.Enroll
		// The whole deletion runs after this enrollment redeemed its
		// token and added the org's key and stream, before it mints.
		svc.Accounts = hookAccounts{Accounts: env.Enroll.Accounts, before: func(orgID string) {
			if _, err := env.Enroll.DeleteOrg(ctx, orgID, "usr_owner"); err != nil {
				t.Error(err)
			}
			// A deletion's second removal ran before this enrollment's
			// steps: put them back as a slower deletion would see them.
			if err := env.Enroll.Accounts.EnsureOrg(ctx, orgID); err != nil {
				t.Error(err)
			}
			if err := env.Enroll.Streams.EnsureOrg(ctx, orgID); err != nil {
				t.Error(err)
			}
		}}
		kp, err := nkeys.CreateUser()
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := kp.PublicKey()
		_, err = svc.Enroll(ctx, wire.EnrollRequest{Token: tok, PublicKey: pub, Name: "edge-1", Version: "0.1.0"})
		if !errors.Is(err, enroll.ErrBadToken) {
			t.Fatalf("enrolling into an org deleted meanwhile: %v, want ErrBadToken", err)
		}
		gone(t, org)
	})
}
