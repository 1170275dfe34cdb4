package storetest

import (
	"context"
	"crypto/sha256"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/persiv/codex/controlplane"
)

// MustUser creates a member of org.
func MustUser(t testing.TB, s controlplane.Store, orgID, email string, role controlplane.Role) controlplane.User {
	t.Helper()
	u := controlplane.User{ID: controlplane.NewID("usr"), OrgID: orgID, Email: email, Role: role, PasswordHash: "$argon2id$x", CreatedAt: t0}
	if err := s.CreateUser(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	return u
}

func testSessions(t *testing.T, s controlplane.Store) {
	ctx := context.Background()
	org, other := MustOrg(t, s), MustOrg(t, s)
	u := MustUser(t, s, org, "a@example.com", controlplane.RoleOwner)
	same := MustUser(t, s, other, "a@example.com", controlplane.RoleViewer)
	got, err := s.UsersByEmail(ctx, "a@example.com")
	if err != nil || len(got) != 2 {
		t.Fatalf("UsersByEmail = %+v, %v; want both orgs' accounts", got, err)
	}
	if got, err := s.UsersByEmail(ctx, "nobody@example.com"); err != nil || len(got) != 0 {
		t.Fatalf("UsersByEmail(unknown) = %+v, %v", got, err)
	}
	if err := s.EndSessions(ctx, org, u.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPassword(ctx, org, u.ID, "$argon2id$y"); err != nil {
		t.Fatal(err)
	}
	g, err := s.User(ctx, org, u.ID)
	if err != nil || g.SessionEpoch != 2 || g.PasswordHash != "$argon2id$y" {
		t.Fatalf("User after EndSessions and SetPassword = %+v, %v; want epoch 2 and the new hash", g, err)
	}
	// Another org's user is not found by id, nor changed.
	if _, err := s.User(ctx, other, u.ID); !errors.Is(err, controlplane.ErrNotFound) {
		t.Fatalf("User across orgs: %v, want ErrNotFound", err)
	}
	for name, fn := range map[string]func() error{
		"EndSessions": func() error { return s.EndSessions(ctx, org, same.ID) },
		"SetPassword": func() error { return s.SetPassword(ctx, org, same.ID, "x") },
		"RemoveUser":  func() error { return s.RemoveUser(ctx, org, same.ID) },
	} {
		if err := fn(); !errors.Is(err, controlplane.ErrNotFound) {
			t.Errorf("%s across orgs: %v, want ErrNotFound", name, err)
		}
	}
	if g, _ := s.User(ctx, other, same.ID); g.SessionEpoch != 0 || g.PasswordHash != same.PasswordHash {
		t.Fatalf("another org's user changed: %+v", g)
	}
}

func testLastOwner(t *testing.T, s controlplane.Store) {
	ctx := context.Background()
	org := MustOrg(t, s)
	a := MustUser(t, s, org, "a@example.com", controlplane.RoleOwner)
	b := MustUser(t, s, org, "b@example.com", controlplane.RoleOwner)
	v := MustUser(t, s, org, "v@example.com", controlplane.RoleViewer)
	if err := s.RemoveUser(ctx, org, v.ID); err != nil {
		t.Fatal(err)
	}
	// Two owners removed at once: exactly one removal succeeds.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, id := range []string{a.ID, b.ID} {
		wg.Go(func() { errs[i] = s.RemoveUser(ctx, org, id) })
	}
	wg.Wait()
	if (errs[0] == nil) == (errs[1] == nil) {
		t.Fatalf("removing both owners at once: %v, %v; want one ErrConflict", errs[0], errs[1])
	}
	for _, err := range errs {
		if err != nil && !errors.Is(err, controlplane.ErrConflict) {
			t.Fatalf("last owner removal: %v, want ErrConflict", err)
		}
	}
	if us, err := s.Users(ctx, org); err != nil || len(us) != 1 || us[0].Role != controlplane.RoleOwner {
		t.Fatalf("Users = %+v, %v; want the one owner left", us, err)
	}
	if err := s.RemoveUser(ctx, org, v.ID); !errors.Is(err, controlplane.ErrNotFound) {
		t.Fatalf("removing a removed user: %v, want ErrNotFound", err)
	}
}

func testInvites(t *testing.T, s controlplane.Store) {
	ctx := context.Background()
	org, other := MustOrg(t, s), MustOrg(t, s)
	owner := MustUser(t, s, org, "o@example.com", controlplane.RoleOwner)
	hash := sha256.Sum256([]byte("invite-1"))
	expired := sha256.Sum256([]byte("invite-2"))
	for _, inv := range []controlplane.Invite{
		{Hash: hash, OrgID: org, Email: "n@example.com", Role: controlplane.RoleAdmin, CreatedBy: owner.ID, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)},
		{Hash: expired, OrgID: org, Email: "e@example.com", Role: controlplane.RoleViewer, CreatedBy: owner.ID, CreatedAt: t0, ExpiresAt: t0.Add(time.Minute)},
	} {
		if err := s.CreateInvite(ctx, inv); err != nil {
			t.Fatal(err)
		}
	}
	now := t0.Add(2 * time.Minute)
	if got, err := s.Invites(ctx, org, now); err != nil || len(got) != 1 || got[0].Hash != hash || got[0].Role != controlplane.RoleAdmin {
		t.Fatalf("Invites = %+v, %v; want the one pending", got, err)
	}
	if got, err := s.Invites(ctx, other, now); err != nil || len(got) != 0 {
		t.Fatalf("another org's Invites = %+v, %v", got, err)
	}
	if inv, err := s.Invite(ctx, hash, now); err != nil || inv.OrgID != org || inv.Email != "n@example.com" {
		t.Fatalf("Invite = %+v, %v", inv, err)
	}
	if _, err := s.Invite(ctx, expired, now); !errors.Is(err, controlplane.ErrNotFound) {
		t.Fatalf("expired Invite: %v, want ErrNotFound", err)
	}
	if _, err := s.RedeemInvite(ctx, expired, now, controlplane.User{ID: controlplane.NewID("usr"), PasswordHash: "h"}); !errors.Is(err, controlplane.ErrNotFound) {
		t.Fatalf("redeeming an expired invite: %v, want ErrNotFound", err)
	}
	u, err := s.RedeemInvite(ctx, hash, now, controlplane.User{ID: controlplane.NewID("usr"), PasswordHash: "h"})
	if err != nil || u.OrgID != org || u.Email != "n@example.com" || u.Role != controlplane.RoleAdmin {
		t.Fatalf("RedeemInvite = %+v, %v", u, err)
	}
	if g, err := s.User(ctx, org, u.ID); err != nil || g.Email != u.Email {
		t.Fatalf("redeemed member = %+v, %v", g, err)
	}
	if _, err := s.RedeemInvite(ctx, hash, now, controlplane.User{ID: controlplane.NewID("usr"), PasswordHash: "h"}); !errors.Is(err, controlplane.ErrNotFound) {
		t.Fatalf("second redemption: %v, want ErrNotFound", err)
	}
}

func testEnrollTokensListed(t *testing.T, s controlplane.Store) {
	ctx := context.Background()
	org, other := MustOrg(t, s), MustOrg(t, s)
	e := MustEdge(t, s, org)
	hash := sha256.Sum256([]byte("unused"))
	if err := s.CreateEnrollToken(ctx, controlplane.EnrollToken{Hash: hash, OrgID: org, CreatedAt: t0.Add(time.Hour), ExpiresAt: t0.Add(2 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	got, err := s.EnrollTokens(ctx, org)
	if err != nil || len(got) != 2 {
		t.Fatalf("EnrollTokens = %+v, %v", got, err)
	}
	if got[0].Hash != hash || !got[0].UsedAt.IsZero() || got[1].EdgeID != e.ID || got[1].UsedAt.IsZero() {
		t.Fatalf("EnrollTokens = %+v; want the unused one first, then the one that enrolled %s", got, e.ID)
	}
	if got, err := s.EnrollTokens(ctx, other); err != nil || len(got) != 0 {
		t.Fatalf("another org's EnrollTokens = %+v, %v", got, err)
	}
}
