package main

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/persiv/codex/controlplane/httpapi"
	"github.com/persiv/codex/controlplane/testenv"
)

// nkeySeed matches a NATS user seed in the clear.
var nkeySeed = regexp.MustCompile(`SU[A-Z2-7]{56}`)

func TestTelemetryCommands(t *testing.T) {
	cp := testenv.New(t, testenv.Options{})
	api := httptest.NewServer((&httpapi.API{Enroll: cp.Enroll}).Handler())
	t.Cleanup(api.Close)
	org := cp.Org(t)
	c := newCLI(t)

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

	tok, err := cp.Enroll.CreateToken(context.Background(), org, time.Hour)
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
	stored, err := cp.Store.Edge(context.Background(), org, enr.EdgeID)
	if err != nil || enr.OrgID != org || enr.Sharing || stored.Name != "cli-test" {
		t.Fatalf("enrolled %+v, control plane has %+v (%v)", enr, stored, err)
	}
	// Only the public key went out; the seed is stored sealed.
	raw, err := os.ReadFile(filepath.Join(c.env["CODEX_DATA_DIR"], "telemetry", "enrollment.json"))
	if err != nil || !strings.Contains(string(raw), stored.PublicKey) {
		t.Fatalf("enrollment.json does not name the enrolled public key: %v", err)
	}
	filepath.WalkDir(c.env["CODEX_DATA_DIR"], func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if b, _ := os.ReadFile(path); nkeySeed.Match(b) {
				t.Errorf("%s holds a NATS seed in the clear", path)
			}
		}
		return nil
	})

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
	if out := c.ok("telemetry", "ledger"); !strings.Contains(out, "no batch has left") {
		t.Fatalf("empty ledger: %q", out)
	}
	if out := c.ok("telemetry", "ledger", "--json"); out != "" {
		t.Fatalf("empty ledger as JSON: %q", out)
	}
	c.ok("telemetry", "off")
	if out := c.ok("telemetry", "status"); !strings.Contains(out, "sharing:          off (since") {
		t.Fatalf("status after off:\n%s", out)
	}
}
