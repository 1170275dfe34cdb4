package storetest

import (
	"context"
	"crypto/sha256"
	"errors"
	"strconv"
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
		"RemoveUser":  func() error { return s.RemoveUser(ctx, org, same.ID, controlplane.RoleViewer) },
		"SetRole":     func() error { return s.SetRole(ctx, org, same.ID, controlplane.RoleViewer, controlplane.RoleOwner) },
	} {
		if err := fn(); !errors.Is(err, controlplane.ErrNotFound) {
			t.Errorf("%s across orgs: %v, want ErrNotFound", name, err)
		}
	}
	if g, _ := s.User(ctx, other, same.ID); g.SessionEpoch != 0 || g.PasswordHash != same.PasswordHash || g.Role != controlplane.RoleViewer {
		t.Fatalf("another org's user changed: %+v", g)
	}
}

func testLastOwner(t *testing.T, s controlplane.Store) {
	ctx := context.Background()
	org := MustOrg(t, s)
	a := MustUser(t, s, org, "a@example.com", controlplane.RoleOwner)
	b := MustUser(t, s, org, "b@example.com", controlplane.RoleOwner)
	v := MustUser(t, s, org, "v@example.com", controlplane.RoleViewer)
	if err := s.RemoveUser(ctx, org, v.ID, controlplane.RoleAdmin); !errors.Is(err, controlplane.ErrConflict) || errors.Is(err, controlplane.ErrLastOwner) {
		t.Fatalf("removing a viewer seen as an admin: %v, want ErrConflict (role changed)", err)
	}
	if err := s.RemoveUser(ctx, org, v.ID, controlplane.RoleViewer); err != nil {
		t.Fatal(err)
	}
	// Two owners removed at once: exactly one removal succeeds.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, id := range []string{a.ID, b.ID} {
		wg.Go(func() { errs[i] = s.RemoveUser(ctx, org, id, controlplane.RoleOwner) })
	}
	wg.Wait()
	if (errs[0] == nil) == (errs[1] == nil) {
		t.Fatalf("removing both owners at once: %v, %v; want one ErrConflict", errs[0], errs[1])
	}
	for _, err := range errs {
		if err != nil && !errors.Is(err, controlplane.ErrLastOwner) {
			t.Fatalf("last owner removal: %v, want ErrLastOwner", err)
		}
	}
	if us, err := s.Users(ctx, org); err != nil || len(us) != 1 || us[0].Role != controlplane.RoleOwner {
		t.Fatalf("Users = %+v, %v; want the one owner left", us, err)
	}
	if err := s.RemoveUser(ctx, org, v.ID, controlplane.RoleViewer); !errors.Is(err, controlplane.ErrNotFound) {
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

func testSetRole(t *testing.T, s controlplane.Store) {
	ctx := context.Background()
	org, other := MustOrg(t, s), MustOrg(t, s)
	owner := MustUser(t, s, org, "o@example.com", controlplane.RoleOwner)
	u := MustUser(t, s, org, "u@example.com", controlplane.RoleViewer)
	stranger := MustUser(t, s, other, "s@example.com", controlplane.RoleViewer)
	const (
		O = controlplane.RoleOwner
		A = controlplane.RoleAdmin
		V = controlplane.RoleViewer
	)
	// The steps run in order on the same two members; want is the error
	// kind, then the roles both members must have.
	for _, tc := range []struct {
		name     string
		org, id  string
		from, to controlplane.Role
		want     error
		owner, u controlplane.Role
	}{
		{"viewer to admin", org, u.ID, V, A, nil, O, A},
		{"same role", org, u.ID, A, A, nil, O, A},
		{"stale from", org, u.ID, V, O, controlplane.ErrConflict, O, A},
		{"last owner demoted", org, owner.ID, O, A, controlplane.ErrLastOwner, O, A},
		{"last owner to owner", org, owner.ID, O, O, nil, O, A},
		{"admin to owner", org, u.ID, A, O, nil, O, O},
		{"one of two owners demoted", org, owner.ID, O, V, nil, V, O},
		{"the other now last", org, u.ID, O, A, controlplane.ErrLastOwner, V, O},
		{"unknown role", org, owner.ID, V, "root", controlplane.ErrInvalid, V, O},
		{"unknown member", org, "usr_nobody", V, A, controlplane.ErrNotFound, V, O},
		{"another org's member", org, stranger.ID, V, O, controlplane.ErrNotFound, V, O},
		{"a member from another org", other, u.ID, O, V, controlplane.ErrNotFound, V, O},
	} {
		err := s.SetRole(ctx, tc.org, tc.id, tc.from, tc.to)
		if (tc.want == nil) != (err == nil) || !errors.Is(err, tc.want) {
			t.Fatalf("%s: SetRole = %v, want %v", tc.name, err, tc.want)
		}
		if tc.want == controlplane.ErrConflict && errors.Is(err, controlplane.ErrLastOwner) {
			t.Fatalf("%s: SetRole = %v, a stale role is not the last owner", tc.name, err)
		}
		for _, m := range []struct {
			id   string
			want controlplane.Role
		}{{owner.ID, tc.owner}, {u.ID, tc.u}} {
			if g, err := s.User(ctx, org, m.id); err != nil || g.Role != m.want {
				t.Fatalf("%s: member %s is %q (%v), want %q", tc.name, m.id, g.Role, err, m.want)
			}
		}
	}
	if g, _ := s.User(ctx, other, stranger.ID); g.Role != V || g.SessionEpoch != 0 {
		t.Fatalf("another org's member changed: %+v", g)
	}
	if g, _ := s.User(ctx, org, u.ID); g.SessionEpoch != 0 {
		t.Fatalf("a role change bumped the session epoch to %d: sessions read the role per request", g.SessionEpoch)
	}
}

// testSetRoleRace: two owners demote each other, or one is demoted while
// the other is removed, at the same time: one change wins, the other gets
// ErrLastOwner, and the org keeps an owner.
func testSetRoleRace(t *testing.T, s controlplane.Store) {
	ctx := context.Background()
	for i := range 32 {
		org := MustOrg(t, s)
		a := MustUser(t, s, org, "a@example.com", controlplane.RoleOwner)
		b := MustUser(t, s, org, "b@example.com", controlplane.RoleOwner)
		second := func() error { return s.SetRole(ctx, org, b.ID, controlplane.RoleOwner, controlplane.RoleViewer) }
		if i%2 == 1 {
			second = func() error { return s.RemoveUser(ctx, org, b.ID, controlplane.RoleOwner) }
		}
		var wg sync.WaitGroup
		errs := make([]error, 2)
		wg.Go(func() { errs[0] = s.SetRole(ctx, org, a.ID, controlplane.RoleOwner, controlplane.RoleAdmin) })
		wg.Go(func() { errs[1] = second() })
		wg.Wait()
		if (errs[0] == nil) == (errs[1] == nil) {
			t.Fatalf("round %d: demoting both owners at once: %v, %v; want one ErrLastOwner", i, errs[0], errs[1])
		}
		for _, err := range errs {
			if err != nil && !errors.Is(err, controlplane.ErrLastOwner) {
				t.Fatalf("round %d: %v, want ErrLastOwner", i, err)
			}
		}
		us, err := s.Users(ctx, org)
		if err != nil {
			t.Fatal(err)
		}
		owners := 0
		for _, u := range us {
			if u.Role == controlplane.RoleOwner {
				owners++
			}
		}
		if owners != 1 {
			t.Fatalf("round %d: %d owners left, want 1: %+v", i, owners, us)
		}
	}
}

func testRevokeInvite(t *testing.T, s controlplane.Store) {
	ctx := context.Background()
	org, other := MustOrg(t, s), MustOrg(t, s)
	owner := MustUser(t, s, org, "o@example.com", controlplane.RoleOwner)
	now := t0.Add(10 * time.Minute)
	mk := func(org, name string, expires time.Time) [32]byte {
		h := sha256.Sum256([]byte(name))
		if err := s.CreateInvite(ctx, controlplane.Invite{Hash: h, OrgID: org, Email: name + "@example.com", Role: controlplane.RoleViewer, CreatedBy: owner.ID, CreatedAt: t0, ExpiresAt: expires}); err != nil {
			t.Fatal(err)
		}
		return h
	}
	pending := mk(org, "pending", now.Add(time.Hour))
	kept := mk(org, "kept", now.Add(time.Hour))
	theirs := mk(other, "theirs", now.Add(time.Hour))
	expired := mk(org, "expired", now.Add(-time.Minute))
	used := mk(org, "used", now.Add(time.Hour))
	if _, err := s.RedeemInvite(ctx, used, now, controlplane.User{ID: controlplane.NewID("usr"), PasswordHash: "h"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		org  string
		hash [32]byte
		want error
	}{
		{"another org's", org, theirs, controlplane.ErrNotFound},
		{"pending", org, pending, nil},
		{"already revoked", org, pending, controlplane.ErrNotFound},
		{"expired", org, expired, controlplane.ErrNotFound},
		{"used", org, used, controlplane.ErrNotFound},
		{"unknown", org, sha256.Sum256([]byte("unknown")), controlplane.ErrNotFound},
		{"own org's, named by another", other, kept, controlplane.ErrNotFound},
	} {
		if err := s.RevokeInvite(ctx, tc.org, tc.hash, now); (tc.want == nil) != (err == nil) || !errors.Is(err, tc.want) {
			t.Errorf("%s: RevokeInvite = %v, want %v", tc.name, err, tc.want)
		}
	}
	// The revoked invitation is gone everywhere; the others are not.
	if got, err := s.Invites(ctx, org, now); err != nil || len(got) != 1 || got[0].Hash != kept {
		t.Fatalf("Invites after revoking = %+v, %v; want the kept one only", got, err)
	}
	if got, err := s.Invites(ctx, other, now); err != nil || len(got) != 1 || got[0].Hash != theirs {
		t.Fatalf("another org's Invites = %+v, %v; want theirs untouched", got, err)
	}
	if _, err := s.Invite(ctx, pending, now); !errors.Is(err, controlplane.ErrNotFound) {
		t.Fatalf("Invite(revoked) = %v, want ErrNotFound", err)
	}
	if _, err := s.RedeemInvite(ctx, pending, now, controlplane.User{ID: controlplane.NewID("usr"), PasswordHash: "h"}); !errors.Is(err, controlplane.ErrNotFound) {
		t.Fatalf("RedeemInvite(revoked) = %v, want ErrNotFound", err)
	}
	if us, _ := s.Users(ctx, org); len(us) != 2 {
		t.Fatalf("org has %d members, want the owner and the used invitation's", len(us))
	}
}

// testRevokeInviteRace revokes and redeems each of several invitations at
// once: exactly one of the two succeeds, and a member exists exactly when
// the redemption did.
func testRevokeInviteRace(t *testing.T, s controlplane.Store) {
	ctx := context.Background()
	org := MustOrg(t, s)
	owner := MustUser(t, s, org, "o@example.com", controlplane.RoleOwner)
	now := t0.Add(time.Minute)
	for i := range 12 {
		email := "n" + strconv.Itoa(i) + "@example.com"
		h := sha256.Sum256([]byte(email))
		if err := s.CreateInvite(ctx, controlplane.Invite{Hash: h, OrgID: org, Email: email, Role: controlplane.RoleAdmin, CreatedBy: owner.ID, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var revokeErr, redeemErr error
		var u controlplane.User
		wg.Go(func() { revokeErr = s.RevokeInvite(ctx, org, h, now) })
		wg.Go(func() {
			u, redeemErr = s.RedeemInvite(ctx, h, now, controlplane.User{ID: controlplane.NewID("usr"), PasswordHash: "h"})
		})
		wg.Wait()
		if (revokeErr == nil) == (redeemErr == nil) {
			t.Fatalf("invitation %d: revoke %v, redeem %v; want exactly one to succeed", i, revokeErr, redeemErr)
		}
		for _, err := range []error{revokeErr, redeemErr} {
			if err != nil && !errors.Is(err, controlplane.ErrNotFound) {
				t.Fatalf("invitation %d: %v, want ErrNotFound", i, err)
			}
		}
		found := false
		us, err := s.Users(ctx, org)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range us {
			found = found || m.Email == email
		}
		if found != (redeemErr == nil) || (redeemErr == nil && u.Email != email) {
			t.Fatalf("invitation %d: member exists %v, redeem %v", i, found, redeemErr)
		}
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

// testRemoveRacesPromotion: an admin's removal of an admin races an owner
// promoting that member to owner. Either the removal wins, or the
// promotion does and the removal, which saw an admin, is refused: a member
// is never removed as an admin after becoming an owner.
func testRemoveRacesPromotion(t *testing.T, s controlplane.Store) {
	ctx := context.Background()
	for i := range 32 {
		org := MustOrg(t, s)
		MustUser(t, s, org, "o@example.com", controlplane.RoleOwner)
		m := MustUser(t, s, org, "m@example.com", controlplane.RoleAdmin)
		var wg sync.WaitGroup
		var promote, remove error
		wg.Go(func() { promote = s.SetRole(ctx, org, m.ID, controlplane.RoleAdmin, controlplane.RoleOwner) })
		wg.Go(func() { remove = s.RemoveUser(ctx, org, m.ID, controlplane.RoleAdmin) })
		wg.Wait()
		switch {
		case promote == nil && remove == nil:
			t.Fatalf("round %d: a member promoted to owner was removed as an admin", i)
		case promote == nil && !errors.Is(remove, controlplane.ErrConflict):
			t.Fatalf("round %d: removal after the promotion: %v, want ErrConflict", i, remove)
		case remove == nil && !errors.Is(promote, controlplane.ErrNotFound):
			t.Fatalf("round %d: promotion after the removal: %v, want ErrNotFound", i, promote)
		case promote != nil && remove != nil:
			t.Fatalf("round %d: both failed: %v, %v", i, promote, remove)
		}
	}
}
