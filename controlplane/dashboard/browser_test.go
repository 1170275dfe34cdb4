package dashboard

import (
	"context"
	"crypto/sha256"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/nats-io/nkeys"

	"github.com/persiv/codex/controlplane"
	"github.com/persiv/codex/controlplane/testenv"
	"github.com/persiv/codex/shared/wire"
)

// artifactDir is where the browser test leaves its screenshots:
// $CODEX_ARTIFACTS/dashboard, or .tmp/artifacts/dashboard at the
// repository root.
func artifactDir(t *testing.T) string {
	dir := os.Getenv("CODEX_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "..", ".tmp", "artifacts")
	}
	dir, err := filepath.Abs(filepath.Join(dir, "dashboard"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// chromium finds Debian's chromium (scripts/install-chromium.sh installs
// it). In CI its absence is a failure, not a skip.
func chromium(t *testing.T) string {
	for _, name := range []string{os.Getenv("CHROMIUM"), "chromium", "chromium-browser"} {
		if name == "" {
			continue
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed: run scripts/install-chromium.sh")
	}
	t.Skip("chromium is not installed (scripts/install-chromium.sh); CI=true makes this a failure")
	return ""
}

// enrollEdge enrolls an edge with a name and version, as codex-edge does.
func enrollEdge(t *testing.T, env *testenv.Env, orgID, name, version string) testenv.Edge {
	t.Helper()
	ctx := context.Background()
	tok, err := env.Enroll.CreateToken(ctx, orgID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	resp, err := env.Enroll.Enroll(ctx, wire.EnrollRequest{Token: tok, PublicKey: pub, Name: name, Version: version})
	if err != nil {
		t.Fatal(err)
	}
	return testenv.Edge{EnrollResponse: resp, Key: kp}
}

// TestBrowserOverviewAndFleet logs in with headless Chromium and reads the
// overview, whose figures come from batches an enrolled edge published
// over NATS, and the fleet page; it changes a member's role and revokes
// an invitation on the members page; it saves screenshots of the pages.
func TestBrowserOverviewAndFleet(t *testing.T) {
	exe := chromium(t)
	f := newFixture(t)
	ctx := context.Background()
	now := f.clock.now()
	org := controlplane.NewID("org")
	if err := f.env.Store.CreateOrg(ctx, controlplane.Org{ID: org, Name: "Acme Robotics", CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	ada := f.user(t, org, "ada@acme.example", controlplane.RoleOwner)
	grace := f.user(t, org, "grace@acme.example", controlplane.RoleViewer)
	if err := f.env.Store.CreateInvite(ctx, controlplane.Invite{Hash: sha256.Sum256([]byte("invite")), OrgID: org, Email: "linus@acme.example",
		Role: controlplane.RoleAdmin, CreatedBy: ada.ID, CreatedAt: now, ExpiresAt: now.Add(7 * 24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	edge := enrollEdge(t, f.env, org, "edge-eu-west-1", "0.4.2")
	enrollEdge(t, f.env, org, "edge-us-east-1", "0.4.1")
	if _, err := f.env.Enroll.CreateToken(ctx, org, 24*time.Hour); err != nil {
		t.Fatal(err)
	}

	// The edge publishes a day of batches, every 30 minutes, over NATS.
	js := edge.JetStream(t)
	var want sent
	const batches = 47
	for seq := int64(1); seq <= batches; seq++ {
		b := variedBatch(org, edge.EdgeID, seq, now.Truncate(time.Minute).Add(-time.Duration(batches-seq)*30*time.Minute))
		want.add(b)
		publishBatch(t, js, edge, b)
	}
	testenv.Eventually(t, 10*time.Second, "every batch stored", func() bool { return f.env.Ingester.Stats().Stored == batches })

	// Plain HTTP on 127.0.0.1, as codex-controlplane serves by default:
	// Chromium keeps Secure cookies for loopback origins.
	srv := httptest.NewServer(f.echo)
	defer srv.Close()
	base := srv.URL

	alloc, cancel := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(exe),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1440, 1000),
	)
	defer cancel()
	bctx, cancel := chromedp.NewContext(alloc)
	defer cancel()
	bctx, cancel = context.WithTimeout(bctx, 90*time.Second)
	defer cancel()

	dir := artifactDir(t)
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
	attrOf := func(sel, name string) string {
		t.Helper()
		a, err := chromedp.Run(bctx, chromedp.AttributeValue(sel, name))
		if err != nil || !a.Exists {
			t.Fatalf("browser: %s[%s]: %v", sel, name, err)
		}
		return a.Value
	}
	count := func(sel string) int {
		t.Helper()
		n, err := chromedp.Run(bctx, chromedp.Nodes(sel))
		if err != nil {
			t.Fatalf("browser: nodes %s: %v", sel, err)
		}
		return len(n)
	}
	shot := func() []byte {
		t.Helper()
		png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("browser: screenshot: %v", err)
		}
		return png
	}

	do("login page", chromedp.Navigate(base+"/login"), chromedp.WaitVisible("#login-form"))
	loginPNG := shot()
	do("log in", chromedp.SendKeys("#email", "ada@acme.example"), chromedp.SendKeys("#password", testPassword),
		chromedp.Click("#login-submit"), chromedp.WaitVisible("#total-requests"))
	requests, cost, saved := attrOf("#total-requests", "data-value"), attrOf("#total-cost", "data-nano"), attrOf("#total-saved", "data-nano")
	tokensIn, tokensOut := attrOf("#tokens-input", "data-value"), attrOf("#tokens-output", "data-value")
	reqText, costText, hitText := text("#total-requests"), text("#total-cost"), text("#hit-rate")
	chartPaths := count("#chart-requests svg path") + count("#chart-tokens svg path") + count("#chart-latency svg path")
	overviewPNG := shot()

	do("fleet page", chromedp.Navigate(base+"/fleet"), chromedp.WaitVisible("#edges"))
	edgeRows := count("#edges tr.edge-row")
	edgeText := text("#edges")
	sharing := text(`tr[data-edge="` + edge.EdgeID + `"] .pill-on`)
	fleetPNG := shot()

	do("privacy page", chromedp.Navigate(base+"/privacy"), chromedp.WaitVisible("#never"))
	privacyPNG := shot()
	do("members page", chromedp.Navigate(base+"/members"), chromedp.WaitVisible("#members"), chromedp.WaitVisible("#invites"))
	membersPNG := shot()
	invitesText := text("#invites")
	// The forms work in a browser under the CSP: a role change, then a
	// revocation, each back on the page with its notice.
	roleForm := `form[action="/members/` + grace.ID + `/role"]`
	do("change a role", chromedp.SetValue(roleForm+" select", "admin"), chromedp.Click(roleForm+" button"),
		chromedp.WaitVisible(".alert-ok"))
	roleNotice := text(".alert-ok")
	do("revoke the invitation", chromedp.Click(`form[action^="/members/invites/"] button`), chromedp.WaitVisible(".alert-ok"),
		chromedp.WaitNotPresent("#invites"))
	revokeNotice := text(".alert-ok")

	for name, png := range map[string][]byte{"login.png": loginPNG, "overview.png": overviewPNG, "fleet.png": fleetPNG, "privacy.png": privacyPNG, "members.png": membersPNG} {
		if len(png) < 1000 || string(png[1:4]) != "PNG" {
			t.Errorf("%s: not a PNG screenshot (%d bytes)", name, len(png))
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("screenshots in %s", dir)

	for name, tc := range map[string]struct {
		got  string
		want int64
	}{
		"requests": {requests, want.requests}, "cost (nano-USD)": {cost, want.cost}, "saved (nano-USD)": {saved, want.saved},
		"input tokens": {tokensIn, want.input}, "output tokens": {tokensOut, want.output},
	} {
		if tc.got != strconv.FormatInt(tc.want, 10) {
			t.Errorf("overview %s = %s, sent %d", name, tc.got, tc.want)
		}
	}
	if reqText != num(want.requests) || costText != usd(want.cost) || hitText != pct(float64(want.hits)/float64(want.hits+want.misses)) {
		t.Errorf("overview shows %q requests, %q cost, %q hit rate; sent %d, %s, %d/%d", reqText, costText, hitText, want.requests, usd(want.cost), want.hits, want.hits+want.misses)
	}
	if chartPaths < 4 {
		t.Errorf("charts drew %d paths; want lines for requests, tokens and latency", chartPaths)
	}
	if !strings.Contains(invitesText, "linus@acme.example") || !strings.Contains(invitesText, "ada@acme.example") {
		t.Errorf("pending invitations: %q", invitesText)
	}
	if g, _ := f.env.Store.User(ctx, org, grace.ID); g.Role != controlplane.RoleAdmin || roleNotice != notices["role"] {
		t.Errorf("role change in the browser: grace is %s, notice %q", g.Role, roleNotice)
	}
	if inv, _ := f.env.Store.Invites(ctx, org, f.clock.now()); len(inv) != 0 || revokeNotice != notices["invite-revoked"] {
		t.Errorf("revocation in the browser: %d pending, notice %q", len(inv), revokeNotice)
	}
	if edgeRows != 2 || !strings.Contains(edgeText, "edge-eu-west-1") || !strings.Contains(edgeText, "0.4.2") ||
		!strings.Contains(edgeText, "edge-us-east-1") || !strings.Contains(edgeText, "never") || sharing != "on" {
		t.Errorf("fleet: %d rows, sharing %q, text %q", edgeRows, sharing, edgeText)
	}
}
