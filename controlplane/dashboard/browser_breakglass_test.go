package dashboard

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/persiv/codex/controlplane"
	"github.com/persiv/codex/controlplane/totp"
)

// TestBrowserBreakGlass drives the whole break-glass flow in headless
// Chromium: a staff member requests access to an org; their own approval
// and a single other approval do not grant it; a second approval does;
// the staff member reads the org's dashboard read-only under the grant;
// at its expiry the pages answer 404; and the org's owner sees every step
// in the Access log, its chain verified. Screenshots go to the artifacts.
func TestBrowserBreakGlass(t *testing.T) {
	exe := chromium(t)
	f := newFixture(t)
	ctx := context.Background()
	org := f.org(t, "Acme Robotics", controlplane.PlanPro)
	f.user(t, org, "ada@acme.example", controlplane.RoleOwner)
	f.user(t, org, "grace@acme.example", controlplane.RoleViewer)
	edge := enrollEdge(t, f.env, org, "edge-eu-west-1", "0.4.2")
	b := variedBatch(org, edge.EdgeID, 1, f.clock.now().Truncate(time.Minute).Add(-time.Hour))
	var want sent
	want.add(b)
	if _, err := f.env.Store.IngestBatch(ctx, b, f.clock.now()); err != nil {
		t.Fatal(err)
	}
	ann, bob, cat := f.staff(t, "ann@persiv.example"), f.staff(t, "bob@persiv.example"), f.staff(t, "cat@persiv.example")

	srv := httptest.NewServer(f.echo) // plain HTTP on loopback, where Chromium keeps Secure cookies
	defer srv.Close()
	base := srv.URL
	alloc, cancel := chromedp.NewExecAllocator(ctx, chromedp.ExecPath(exe), chromedp.Flag("headless", true), chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true), chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("no-first-run", true), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1440, 1000))
	defer cancel()
	bctx, cancel := chromedp.NewContext(alloc)
	defer cancel()
	bctx, cancel = context.WithTimeout(bctx, 120*time.Second)
	defer cancel()

	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, steps...); err != nil {
			t.Fatalf("browser: %s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(bctx, chromedp.Text(sel))
		if err != nil {
			t.Fatalf("browser: text of %s: %v", sel, err)
		}
		return strings.TrimSpace(s)
	}
	attr := func(sel, name string) string {
		t.Helper()
		a, err := chromedp.Run(bctx, chromedp.AttributeValue(sel, name))
		if err != nil || !a.Exists {
			t.Fatalf("browser: %s[%s]: %v", sel, name, err)
		}
		return a.Value
	}
	shots := map[string][]byte{}
	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("browser: screenshot: %v", err)
		}
		shots[name] = png
	}
	staffIn := func(m staffMember) {
		t.Helper()
		f.clock.add(totp.Period) // a fresh code for every sign-in
		do("staff sign-in of "+m.Email, chromedp.Navigate(base+"/staff/login"), chromedp.WaitVisible("#staff-login-form"),
			chromedp.SendKeys("#email", m.Email), chromedp.SendKeys("#password", testPassword), chromedp.SendKeys("#code", m.code(t, f, 0)),
			chromedp.Click("#staff-login-submit"), chromedp.WaitVisible("#request-form"))
	}
	staffOut := func() {
		t.Helper()
		do("staff sign-out", chromedp.Click("#staff-logout"), chromedp.WaitVisible("#staff-login-form"))
	}
	row := func(id string) string { return `tr[data-request="` + id + `"]` }

	// Ann asks for an hour of access.
	staffIn(ann)
	shot("staff_home.png")
	do("request access", chromedp.SetValue("#request-org", org), chromedp.SendKeys("#request-reason", "Support ticket 4711: usage chart empty"),
		chromedp.SetValue("#request-duration", "1h"), chromedp.Click("#request-submit"), chromedp.WaitVisible(".alert-ok"))
	requested := text(".alert-ok")
	id := attr("tr.request-row", "data-request")
	// Her own approval is refused: the page offers her none, and a
	// hand-made POST with her session's token gets 409.
	self, err := chromedp.Run(bctx, chromedp.Evaluate[int](`fetch("/staff/requests/`+id+`/approve", {method: "POST", redirect: "manual",
		body: new URLSearchParams({csrf: document.body.dataset.csrf})}).then(r => r.status)`,
		chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("browser: self-approval: %v", err)
	}
	ownApprove, _ := chromedp.Run(bctx, chromedp.Nodes(row(id)+" .approve-form", chromedp.AtLeast(0)))
	do("reload", chromedp.Navigate(base+"/staff"), chromedp.WaitVisible(row(id)))
	afterSelf := attr(row(id), "data-state")
	staffOut()

	// Bob approves: one approval does not grant.
	staffIn(bob)
	do("bob approves", chromedp.Click(row(id)+" .approve-form button"), chromedp.WaitVisible(".alert-ok"))
	bobNotice, afterOne := text(".alert-ok"), attr(row(id), "data-state")
	staffOut()

	// Cat approves: the second approval by another staff member grants.
	staffIn(cat)
	do("cat approves", chromedp.Click(row(id)+" .approve-form button"), chromedp.WaitVisible(".alert-ok"))
	catNotice, afterTwo := text(".alert-ok"), attr(row(id), "data-state")
	catOpen, _ := chromedp.Run(bctx, chromedp.Nodes(row(id)+" a.open-org", chromedp.AtLeast(0)))
	staffOut()

	// Ann reads the dashboard, read-only.
	staffIn(ann)
	do("open the org's dashboard", chromedp.Click(row(id)+" a.open-org"), chromedp.WaitVisible("#grant-banner"), chromedp.WaitVisible("#total-requests"))
	banner, requests := text("#grant-banner"), attr("#total-requests", "data-value")
	shot("staff_grant_overview.png")
	do("members under the grant", chromedp.Click(`.nav a[href$="/members"]`), chromedp.WaitVisible("#members"))
	membersText := text("#members")
	forms, _ := chromedp.Run(bctx, chromedp.Nodes(`main form`, chromedp.AtLeast(0)))
	do("fleet under the grant", chromedp.Click(`.nav a[href$="/fleet"]`), chromedp.WaitVisible("#edges"))
	fleetText := text("#edges")

	// An hour later the grant has expired: 404, and nothing is open.
	f.clock.add(time.Hour)
	do("overview after expiry", chromedp.Navigate(base+StaffOrgPrefix+org+"/overview"), chromedp.WaitVisible(".status-code"))
	expiredStatus := text(".status-code")
	shot("staff_grant_expired.png")
	do("staff home after expiry", chromedp.Navigate(base+"/staff"), chromedp.WaitVisible("#request-form"))
	openAfter := text("#request-count")
	staffOut()

	// The owner reads every step in the Access log.
	do("owner sign-in", chromedp.Navigate(base+"/login"), chromedp.WaitVisible("#login-form"), chromedp.SendKeys("#email", "ada@acme.example"),
		chromedp.SendKeys("#password", testPassword), chromedp.Click("#login-submit"), chromedp.WaitVisible("#total-requests"))
	do("privacy page", chromedp.Navigate(base+"/privacy"), chromedp.WaitVisible("#staff-access"))
	securityHref := attr("#security-link", "href")
	do("access log", chromedp.Click("#access-log-link"), chromedp.WaitVisible("#access-log"), chromedp.WaitVisible("#chain-ok"))
	shot("access_log.png")
	kindsNodes, err := chromedp.Run(bctx, chromedp.Nodes("tr.access-row"))
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, n := range kindsNodes {
		kinds = append(kinds, n.AttributeValue("data-kind"))
	}
	logText := text("#access-log")
	plan := text("#plan")

	dir := artifactDir(t)
	for name, png := range shots {
		if len(png) < 1000 || string(png[1:4]) != "PNG" {
			t.Errorf("%s: not a PNG screenshot (%d bytes)", name, len(png))
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("screenshots in %s", dir)

	if requested != staffNotices["requested"] {
		t.Errorf("request notice %q", requested)
	}
	if self != 409 || len(ownApprove) != 0 || afterSelf != "pending" {
		t.Errorf("self-approval: status %d, approve buttons offered %d, state %q; want 409, none, pending", self, len(ownApprove), afterSelf)
	}
	if bobNotice != staffNotices["approved"] || afterOne != "pending" {
		t.Errorf("one approval: notice %q, state %q; want still pending", bobNotice, afterOne)
	}
	if catNotice != staffNotices["granted"] || afterTwo != "active" || len(catOpen) != 0 {
		t.Errorf("two approvals: notice %q, state %q, approver offered the dashboard %d", catNotice, afterTwo, len(catOpen))
	}
	if !strings.Contains(banner, "Acme Robotics") || !strings.Contains(banner, "read-only") || requests != strconv.FormatInt(want.requests, 10) {
		t.Errorf("under the grant: banner %q, requests %s (sent %d)", banner, requests, want.requests)
	}
	if !strings.Contains(membersText, "ada@acme.example") || len(forms) != 0 || !strings.Contains(fleetText, "edge-eu-west-1") {
		t.Errorf("read-only pages: members %q, %d forms, fleet %q", membersText, len(forms), fleetText)
	}
	if expiredStatus != "404" || openAfter != "0" {
		t.Errorf("after expiry: status %q, open requests %q", expiredStatus, openAfter)
	}
	if securityHref != SecurityURL || !strings.EqualFold(plan, "pro") {
		t.Errorf("privacy page links SECURITY.md at %q; plan shown %q", securityHref, plan)
	}
	// Newest first: expiry, the reads, the grant, two approvals, the
	// refused self-approval, the request.
	slices.Reverse(kinds)
	head := []string{"request", "approval_refused", "approve", "approve", "grant"}
	if len(kinds) < len(head)+4 || !slices.Equal(kinds[:len(head)], head) || kinds[len(kinds)-1] != "expire" {
		t.Fatalf("access log kinds (oldest first) %v", kinds)
	}
	for _, k := range kinds[len(head) : len(kinds)-1] {
		if k != "use" {
			t.Fatalf("access log kinds (oldest first) %v: want only reads between the grant and the expiry", kinds)
		}
	}
	for _, w := range []string{"ann@persiv.example", "bob@persiv.example", "cat@persiv.example", "Support ticket 4711", "/overview", "/members", "/fleet"} {
		if !strings.Contains(logText, w) {
			t.Errorf("access log lacks %q", w)
		}
	}
}
