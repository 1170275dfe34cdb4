package dashboard

import (
	"context"
	"net/url"
	"testing"

	"github.com/persiv/codex/controlplane"
	"github.com/persiv/codex/controlplane/sealer"
	"github.com/persiv/codex/controlplane/totp"
)

// staffMember is a staff account with its TOTP secret.
type staffMember struct {
	controlplane.Staff
	secret string
}

// code is the member's TOTP code for the step `offset` steps from now.
func (m staffMember) code(t testing.TB, f *fixture, offset int64) string {
	t.Helper()
	c, err := totp.Code(m.secret, totp.Step(f.clock.now())+offset)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// staff creates a staff account with testPassword and a sealed TOTP
// secret, as `codex-controlplane staff create` does.
func (f *fixture) staff(t testing.TB, email string) staffMember {
	t.Helper()
	ctx := context.Background()
	secret, _, err := totp.New(email)
	if err != nil {
		t.Fatal(err)
	}
	st := controlplane.Staff{ID: controlplane.NewID("stf"), Email: email, PasswordHash: testHash(), CreatedAt: f.clock.now()}
	if st.TOTPSecret, err = f.env.Sealer.Seal(ctx, sealer.Binding{Purpose: controlplane.StaffTOTPPurpose, Name: "staff/" + st.ID}, []byte(secret)); err != nil {
		t.Fatal(err)
	}
	if err := f.env.Store.CreateStaff(ctx, st); err != nil {
		t.Fatal(err)
	}
	return staffMember{st, secret}
}

// staffLogin signs in through the staff form.
func (c *client) staffLogin(email, pw, code string) response {
	c.t.Helper()
	tok := c.csrf("/staff/login")
	return c.post("/staff/login", url.Values{"csrf": {tok}, "email": {email}, "password": {pw}, "code": {code}})
}

// staffSession returns a client signed in as m through the form.
func (f *fixture) staffSession(t testing.TB, m staffMember) *client {
	t.Helper()
	c := f.client(t)
	r := c.staffLogin(m.Email, testPassword, m.code(t, f, 0))
	if r.StatusCode != 303 || r.Header.Get("Location") != "/staff" {
		t.Fatalf("staff login of %s: %d to %q; body %.300s", m.Email, r.StatusCode, r.Header.Get("Location"), r.body)
	}
	// The next sign-in needs a fresh code: move to the next step.
	f.clock.add(totp.Period)
	return c
}

// mustOrg creates an org with a plan.
func (f *fixture) org(t testing.TB, name string, plan controlplane.Plan) string {
	t.Helper()
	o := controlplane.Org{ID: controlplane.NewID("org"), Name: name, CreatedAt: f.clock.now(), Plan: plan}
	if err := f.env.Store.CreateOrg(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	return o.ID
}
