package server_test

import (
	"context"
	"crypto/x509"
	"log/slog"
	"maps"
	"testing"
	"time"

	"github.com/persiv/codex/edge/audit"
	"github.com/persiv/codex/edge/internal/testutil"
	"github.com/persiv/codex/edge/server"
	"github.com/persiv/codex/edge/telemetry"
)

// With a control plane and token configured but sharing off, the edge
// makes no connection, not even to enroll, until sharing is switched on
// through the admin API, which then enrolls; the exchange is in the ledger.
func TestSwitchOnEnrollsDeferred(t *testing.T) {
	cp := newControlPlane(t)
	org := cp.org()
	h := newTelemetryHarness(t)
	h.stop()
	tok := cp.token(org)
	h.cfg.ControlplaneURL, h.cfg.EnrollmentToken = cp.api.URL, tok
	kr := telemetryKeyring(t, h)
	srv, err := server.New(context.Background(), h.cfg, h.store, slog.New(slog.DiscardHandler), server.Options{Getenv: h.getenv,
		Telemetry: func(o *telemetry.Options) {
			o.Poll, o.MaxBackoff = 50*time.Millisecond, 200*time.Millisecond
			if roots, ok := edgeRoots.Load(h); ok {
				o.RootCAs = roots.(*x509.CertPool)
			}
		},
		Enroll: func(ctx context.Context) error {
			_, err := telemetry.Enroll(ctx, telemetry.DirIn(h.cfg.DataDir), kr, cp.api.Client(), cp.api.URL, tok, "edge-test", "0.1.0")
			return err
		}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.srv, h.base = srv, "http://"+srv.Addr()
	tenants := []tenant{h.addOrg("alpha")}

	traffic(t, h, tenants, 0, 5, "c")
	allRecords(t, h, tenants, 5)
	h.srv.Telemetry().Flush(ctxT(t))
	if n, m := cp.apiConns.Load(), cp.relay.conns.Load(); n != 0 || m != 0 {
		t.Fatalf("%d connections to the enrollment API and %d to NATS while sharing was off", n, m)
	}
	if st := h.srv.Telemetry().Status(); st.Enrolled {
		t.Fatalf("enrolled while sharing was off: %+v", st)
	}

	st := setSharing(t, h, true)
	if !st.Enrolled || cp.apiConns.Load() == 0 {
		t.Fatalf("switching on did not enroll: %+v", st)
	}
	// The org's audit log has the enrollment the switch made, then the
	// switch; switching again records the switch alone.
	setSharing(t, h, true)
	want := []struct {
		action, target string
		details        map[string]string
	}{
		{"telemetry.enroll", st.EdgeID, map[string]string{"control_plane": cp.api.URL, "control_plane_org": st.OrgID, "subject": st.Subject}},
		{"telemetry.sharing", "", map[string]string{"on": "true"}},
		{"telemetry.sharing", "", map[string]string{"on": "true"}},
	}
	evs := adminEventsNow(t, h.store, tenants[0].orgID)
	if len(evs) != len(want) {
		t.Fatalf("%d admin events, want %d", len(evs), len(want))
	}
	for i, w := range want {
		it, err := audit.ItemOf(evs[i])
		if err != nil {
			t.Fatal(err)
		}
		if it.Action != w.action || it.Target != w.target || it.Via != "admin-api" || it.Actor != "127.0.0.1" || !maps.Equal(it.Details, w.details) || st.EdgeID == "" {
			t.Errorf("admin event %d: %+v; want %s on %q with %v by admin-api", i, it, w.action, w.target, w.details)
		}
	}
	// The first window once on is sent, without usage: no need to wait
	// for the heartbeat.
	testutil.Eventually(t, 10*time.Second, "a batch once on", func() bool { return h.srv.Telemetry().Status().LastSentSeq > 0 })
	ledger := getLedger(t, h)
	if len(ledger) == 0 || ledger[0].Kind != telemetry.KindEnrollment {
		t.Fatalf("ledger without the enrollment exchange: %+v", ledger)
	}
}
