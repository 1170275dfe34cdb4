package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/persiv/codex/edge/config"

	"github.com/nats-io/nats.go"

	"github.com/persiv/codex/controlplane"
	"github.com/persiv/codex/controlplane/enroll"
	"github.com/persiv/codex/controlplane/httpapi"
	"github.com/persiv/codex/controlplane/natsauth"
	"github.com/persiv/codex/controlplane/natsbus"
	"github.com/persiv/codex/controlplane/store/sqlite"
	"github.com/persiv/codex/controlplane/testenv"
)

// enrollService runs the control plane's enrollment: NATS (JetStream on a
// random port: -1, since 0 means nats-server's default 4222) with the
// authority that mints edge credentials, and a SQLite store.
func enrollService(t *testing.T) (*enroll.Service, controlplane.Store) {
	t.Helper()
	dir := t.TempDir()
	sealer, err := testenv.Sealer(dir)
	if err != nil {
		t.Fatal(err)
	}
	auth, err := natsauth.Open(context.Background(), filepath.Join(dir, "keys"), natsauth.Options{Sealer: sealer})
	if err != nil {
		t.Fatal(err)
	}
	ns, err := natsbus.StartEmbedded(auth, natsbus.EmbeddedConfig{Dir: filepath.Join(dir, "nats"), Listen: "127.0.0.1:-1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	creds, err := auth.SystemCreds()
	if err != nil {
		t.Fatal(err)
	}
	opt, err := natsbus.Creds(creds)
	if err != nil {
		t.Fatal(err)
	}
	sys, err := nats.Connect(ns.ClientURL(), opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sys.Close)
	store, err := sqlite.Open(context.Background(), filepath.Join(dir, "cp.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return &enroll.Service{Store: store, Accounts: &natsbus.Accounts{Auth: auth, Sys: sys}, NATSURL: ns.ClientURL()}, store
}

// nkeySeed matches a NATS user seed in the clear.
var nkeySeed = regexp.MustCompile(`SU[A-Z2-7]{56}`)

// enrollAPI is enrollService behind the control plane's HTTP API, with
// one org.
func enrollAPI(t *testing.T) (svc *enroll.Service, store controlplane.Store, api *httptest.Server, org string) {
	t.Helper()
	svc, store = enrollService(t)
	api = httptest.NewServer((&httpapi.API{Enroll: svc}).Handler())
	t.Cleanup(api.Close)
	org = controlplane.NewID("org")
	if err := store.CreateOrg(context.Background(), controlplane.Org{ID: org, Name: "Acme", CreatedAt: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	return svc, store, api, org
}

func TestTelemetryCommands(t *testing.T) {
	svc, store, api, org := enrollAPI(t)
	c := newCLI(t)
	c.ok("orgs", "create", "acme")

	out := c.ok("telemetry", "status")
	if !strings.Contains(out, "sharing:          off") || !strings.Contains(out, "enrolled:         no") {
		t.Fatalf("fresh status:\n%s", out)
	}
	if code, _, errs := c.run("", "telemetry", "on"); code != 1 || !strings.Contains(errs, "not enrolled") {
		t.Fatalf("on before enrolling: exit %d %q", code, errs)
	}
	if code, _, errs := c.run("", "telemetry", "enroll", "--url", api.URL, "--token", "cpenroll_bogus"); code != 1 || !strings.Contains(errs, "invalid_token") {
		t.Fatalf("bad token: exit %d %q", code, errs)
	}
	if code, _, _ := c.run("", "telemetry", "enroll", "--url", api.URL); code != 2 {
		t.Fatalf("enroll without --token: exit %d, want 2", code)
	}

	tok, err := svc.CreateToken(context.Background(), org, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var enr struct {
		EdgeID  string `json:"edge_id"`
		OrgID   string `json:"org_id"`
		Sharing bool   `json:"sharing"`
	}
	if err := json.Unmarshal([]byte(c.ok("telemetry", "enroll", "--url", api.URL, "--token", tok, "--name", "cli-test", "--json")), &enr); err != nil {
		t.Fatal(err)
	}
	stored, err := store.Edge(context.Background(), org, enr.EdgeID)
	if err != nil || enr.OrgID != org || enr.Sharing || stored.Name != "cli-test" {
		t.Fatalf("enrolled %+v, control plane has %+v (%v)", enr, stored, err)
	}
	// Only the public key went out; the seed is stored sealed.
	raw, err := os.ReadFile(filepath.Join(c.env["CODEX_DATA_DIR"], "telemetry", "enrollment.json"))
	if err != nil || !strings.Contains(string(raw), stored.PublicKey) {
		t.Fatalf("enrollment.json does not name the enrolled public key: %v", err)
	}
	err = filepath.WalkDir(c.env["CODEX_DATA_DIR"], func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if nkeySeed.Match(b) {
			t.Errorf("%s holds a NATS seed in the clear", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	c.ok("telemetry", "on")
	var st struct {
		Sharing bool   `json:"sharing"`
		EdgeID  string `json:"edge_id"`
		Spool   struct {
			MaxBatches int `json:"max_batches"`
		} `json:"spool"`
	}
	if err := json.Unmarshal([]byte(c.ok("telemetry", "status", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if !st.Sharing || st.EdgeID != enr.EdgeID || st.Spool.MaxBatches != 10000 {
		t.Fatalf("status after on: %+v", st)
	}
	// No batch yet: only the enrollment exchanges (the refused one too).
	if out := c.ok("telemetry", "ledger"); strings.Count(out, "enrollment exchange (secrets elided)") != 2 || strings.Contains(out, " seq ") {
		t.Fatalf("ledger before any batch: %q", out)
	}
	if out := c.ok("telemetry", "ledger", "--json"); strings.Count(out, `"kind":"enrollment"`) != 2 {
		t.Fatalf("ledger before any batch as JSON: %q", out)
	}
	c.ok("telemetry", "off")
	if out := c.ok("telemetry", "status"); !strings.Contains(out, "sharing:          off (since") {
		t.Fatalf("status after off:\n%s", out)
	}
	// Each change is in the org's audit log.
	list := c.ok("audit", "list", "--org", "acme", "--json")
	for _, want := range []string{`"action":"telemetry.enroll","actor"`, `"via":"cli","target":"` + enr.EdgeID, `"details":{"on":"true"}`, `"details":{"on":"false"}`} {
		if !strings.Contains(list, want) {
			t.Errorf("audit log lacks %s:\n%s", want, list)
		}
	}
}

// TestEnrollFromConfig is the deployment path (Terraform, Helm): serve
// enrolls with CODEX_CONTROLPLANE_URL and CODEX_ENROLLMENT_TOKEN and applies
// CODEX_SHARE_METRICS; a failure leaves the edge serving without the link.
func TestEnrollFromConfig(t *testing.T) {
	svc, store := enrollService(t)
	var calls atomic.Int64 // every request the control plane received
	h := (&httpapi.API{Enroll: svc}).Handler()
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(api.Close)
	org := controlplane.NewID("org")
	if err := store.CreateOrg(context.Background(), controlplane.Org{ID: org, Name: "Acme", CreatedAt: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	log := slog.New(slog.NewTextHandler(&logs, nil))
	apply := func(c *cli) {
		t.Helper()
		cfg, err := config.Load("", func(k string) string { return c.env[k] })
		if err != nil {
			t.Fatal(err)
		}
		e := &env{ctx: context.Background(), stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard, getenv: func(k string) string { return c.env[k] }}
		st, err := e.openStore(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer closeStore(st, &err)
		e.applyTelemetryConfig(cfg, st, log)
	}

	// A bad token: logged, not enrolled, sharing stays off.
	bad := newCLI(t)
	bad.env["CODEX_CONTROLPLANE_URL"], bad.env["CODEX_ENROLLMENT_TOKEN"], bad.env["CODEX_SHARE_METRICS"] = api.URL, "cpenroll_bogus", "true"
	apply(bad)
	if out := bad.ok("telemetry", "status"); !strings.Contains(out, "enrolled:         no") || !strings.Contains(out, "sharing:          off") {
		t.Fatalf("after a failed enrollment:\n%s", out)
	}
	if !strings.Contains(logs.String(), "enrollment from CODEX_CONTROLPLANE_URL") {
		t.Fatalf("failure not logged: %s", logs.String())
	}

	tok, err := svc.CreateToken(context.Background(), org, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// Sharing off (not configured, and explicitly): no connection, not
	// even to enroll.
	for _, share := range []string{"", "false"} {
		off := newCLI(t)
		off.env["CODEX_CONTROLPLANE_URL"], off.env["CODEX_ENROLLMENT_TOKEN"], off.env["CODEX_SHARE_METRICS"] = api.URL, tok, share
		before := calls.Load()
		apply(off)
		if n := calls.Load() - before; n != 0 {
			t.Fatalf("CODEX_SHARE_METRICS=%q: %d requests to the control plane with sharing off", share, n)
		}
		if out := off.ok("telemetry", "status"); !strings.Contains(out, "enrolled:         no") {
			t.Fatalf("CODEX_SHARE_METRICS=%q: enrolled with sharing off:\n%s", share, out)
		}
		if out := off.ok("telemetry", "ledger"); !strings.Contains(out, "no batch has left") {
			t.Fatalf("ledger with sharing off:\n%s", out)
		}
	}
	// Switching sharing on enrolls with the configured token, and the
	// exchange is in the ledger with its secrets elided.
	late := newCLI(t)
	late.env["CODEX_CONTROLPLANE_URL"], late.env["CODEX_ENROLLMENT_TOKEN"] = api.URL, tok
	apply(late)
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d requests before sharing was switched on, want 1 (the bad token's)", n)
	}
	late.ok("orgs", "create", "acme")
	late.ok("telemetry", "on")
	if n := calls.Load(); n != 2 {
		t.Fatalf("%d requests after sharing was switched on, want 2", n)
	}
	if out := late.ok("telemetry", "status"); !strings.Contains(out, "edge id:          edge_") || !strings.Contains(out, "sharing:          on") {
		t.Fatalf("after telemetry on:\n%s", out)
	}
	ledger := late.ok("telemetry", "ledger", "--json")
	var en struct {
		Kind  string `json:"kind"`
		Batch struct {
			Status  int `json:"status"`
			Request struct {
				Token     string `json:"token"`
				PublicKey string `json:"public_key"`
			} `json:"request"`
			Response struct {
				EdgeID  string `json:"edge_id"`
				UserJWT string `json:"user_jwt"`
			} `json:"response"`
		} `json:"batch"`
	}
	if err := json.Unmarshal([]byte(strings.SplitN(ledger, "\n", 2)[0]), &en); err != nil {
		t.Fatalf("ledger %q: %v", ledger, err)
	}
	if en.Kind != "enrollment" || en.Batch.Status != 200 || en.Batch.Request.Token != "(elided)" || en.Batch.Response.UserJWT != "(elided)" ||
		!strings.HasPrefix(en.Batch.Request.PublicKey, "U") || !strings.HasPrefix(en.Batch.Response.EdgeID, "edge_") {
		t.Fatalf("enrollment ledger entry: %+v", en)
	}
	if strings.Contains(ledger, tok) || strings.Contains(ledger, "eyJ") || nkeySeed.MatchString(ledger) {
		t.Fatalf("a secret in the ledger: %s", ledger)
	}
	// The org's audit log has the enrollment the switch made, then the
	// switch, and not the token.
	var actions []string
	for _, it := range jsonLines(t, late.ok("audit", "list", "--org", "acme", "--json")) {
		actions = append(actions, it["action"].(string))
		if it["action"] != "telemetry.enroll" {
			continue
		}
		d, _ := it["details"].(map[string]any)
		if it["via"] != "cli" || it["target"] != en.Batch.Response.EdgeID || d["control_plane"] != api.URL || d["control_plane_org"] != org || d["subject"] == "" {
			t.Errorf("enrollment event %v", it)
		}
	}
	if want := "orgs.create telemetry.enroll telemetry.sharing"; strings.Join(actions, " ") != want {
		t.Errorf("admin events %q, want %q", actions, want)
	}
	if out := late.ok("audit", "export", "--org", "acme"); strings.Contains(out, tok) {
		t.Errorf("the enrollment token is in the audit log: %s", out)
	}

	tok, err = svc.CreateToken(context.Background(), org, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c := newCLI(t)
	c.ok("orgs", "create", "acme")
	c.env["CODEX_CONTROLPLANE_URL"], c.env["CODEX_ENROLLMENT_TOKEN"], c.env["CODEX_SHARE_METRICS"] = api.URL, tok, "true"
	apply(c)
	out := c.ok("telemetry", "status")
	if !strings.Contains(out, "edge id:          edge_") || !strings.Contains(out, "sharing:          on") {
		t.Fatalf("after enrolling from the configuration:\n%s", out)
	}
	// A restart with the (now used) token keeps the enrollment; the
	// configuration can switch sharing off.
	c.env["CODEX_SHARE_METRICS"] = "false"
	apply(c)
	if out := c.ok("telemetry", "status"); !strings.Contains(out, "sharing:          off") || !strings.Contains(out, "edge id:          edge_") {
		t.Fatalf("after a restart with sharing off:\n%s", out)
	}
	// What the configuration changed is in the audit log, by the variable
	// that changed it; a restart that changes nothing adds nothing.
	apply(c)
	var got []string
	for _, it := range jsonLines(t, c.ok("audit", "list", "--org", "acme", "--json")) {
		d, _ := it["details"].(map[string]any)
		got = append(got, fmt.Sprintf("%s %s %s %v", it["action"], it["via"], it["actor"], d["on"]))
	}
	want := []string{"orgs.create cli", "telemetry.enroll config CODEX_ENROLLMENT_TOKEN <nil>",
		"telemetry.sharing config CODEX_SHARE_METRICS true", "telemetry.sharing config CODEX_SHARE_METRICS false"}
	if len(got) != len(want) || !strings.HasPrefix(got[0], want[0]) || !slices.Equal(got[1:], want[1:]) {
		t.Errorf("admin events of the configuration:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if out := c.ok("audit", "export", "--org", "acme"); strings.Contains(out, tok) {
		t.Errorf("the enrollment token is in the audit log: %s", out)
	}
}
