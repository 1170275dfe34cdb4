package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/persiv/codex/controlplane"
	"github.com/persiv/codex/controlplane/ingest"
	"github.com/persiv/codex/controlplane/natsbus"
	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/config"
	"github.com/persiv/codex/edge/internal/testutil"
	"github.com/persiv/codex/edge/keyring"
	"github.com/persiv/codex/edge/server"
	"github.com/persiv/codex/edge/store/postgres"
	"github.com/persiv/codex/edge/store/postgres/pgtest"
	"github.com/persiv/codex/edge/telemetry"
	"github.com/persiv/codex/shared/wire"
)

// sharingAt switches sharing through an edge's admin API.
func sharingAt(adminAddr string, on bool) error {
	resp, err := http.Post("http://"+adminAddr+"/admin/v1/telemetry/sharing", "application/json", strings.NewReader(fmt.Sprintf(`{"on":%v}`, on)))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("sharing: %s", resp.Status)
	}
	return nil
}

// ledgerAt reads an edge's egress ledger through its admin API.
func ledgerAt(t *testing.T, adminAddr string) []telemetry.LedgerEntry {
	t.Helper()
	resp, err := http.Get("http://" + adminAddr + "/admin/v1/telemetry/ledger")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Entries []telemetry.LedgerEntry }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out.Entries
}

// sharedLease is the spool lease of the shared-link tests' edges.
const sharedLease = time.Second

// sharedFleet starts edges on one Postgres database that share the link
// to one control plane, enrolling with one token as serve does.
type sharedFleet struct {
	t     *testing.T
	f     *pgFleet
	cp    *controlPlane
	token string

	mu sync.Mutex
	kr *keyring.Keyring // an edge's telemetry keyring, to check the seed
}

func (sf *sharedFleet) keyring() *keyring.Keyring {
	sf.mu.Lock()
	defer sf.mu.Unlock()
	return sf.kr
}

// start starts an edge whose ledger entries name it name.
func (sf *sharedFleet) start(name string) *pgEdge {
	t := sf.t
	t.Helper()
	return sf.f.startOpts(func(c *config.Config) {
		c.TelemetryWindow = 300 * time.Millisecond
		c.ControlplaneURL, c.EnrollmentToken = sf.cp.api.URL, sf.token
		c.TelemetrySpoolLease = sharedLease
	}, func(cfg config.Config, db *postgres.DB, o *server.Options) {
		// The state and keys serve uses on Postgres.
		st, ks, err := server.TelemetryState(cfg, db)
		if err != nil {
			t.Fatal(err)
		}
		k, err := server.OpenKeyring(context.Background(), cfg, ks, o.Getenv, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		sf.mu.Lock()
		sf.kr = k
		sf.mu.Unlock()
		o.Telemetry = func(to *telemetry.Options) {
			to.Instance = name
			to.Poll, to.MaxBackoff = 50*time.Millisecond, 200*time.Millisecond
		}
		// What codex-edge serve installs (enrollHook): enroll with the
		// configured token unless the deployment is enrolled.
		o.Enroll = func(ctx context.Context) error {
			_, err := telemetry.EnrollOnce(ctx, st, k, sf.cp.api.Client(), cfg.ControlplaneURL, cfg.EnrollmentToken, name, "0.1.0")
			return err
		}
	})
}

// TestTelemetryReplicasShareOneLink: two edges on one Postgres database
// switch sharing on at once with one single-use token, and enroll once;
// they send under that one identity with sequence numbers that never
// collide, so the control plane's totals equal both edges' metadata; each
// lists the deployment's whole egress; batches a stopped replica held (one
// it published before stopping, one it did not) are sent by the other
// once the lease expires and stored exactly once; the NATS seed is not in
// the database in plaintext.
func TestTelemetryReplicasShareOneLink(t *testing.T) {
	// A de-duplication window longer than the lease, so the stream
	// itself tells a batch sent twice (by the stopped replica and the
	// other) from a new one.
	cp := newControlPlaneWith(t, false, ingest.Limits{Duplicates: time.Minute})
	cpOrg := cp.org()
	token := cp.token(cpOrg)
	owner, app := pgtest.FreshDB(t)
	f := newPGFleet(t, app)
	org := f.addOrg("acme")
	_, key := f.addKey(org)
	ctx := ctxT(t)
	sf := &sharedFleet{t: t, f: f, cp: cp, token: token}
	start := sf.start
	a, b := start("replica-a"), start("replica-b")

	// Both switched on at once: the token is used once.
	var wg sync.WaitGroup
	for _, e := range []*pgEdge{a, b} {
		wg.Go(func() {
			if err := sharingAt(e.srv.AdminAddr(), true); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	edges, err := cp.store.Edges(ctx, cpOrg)
	if err != nil || len(edges) != 1 {
		t.Fatalf("the control plane enrolled %d edges (%v), want 1", len(edges), err)
	}
	for _, e := range []*pgEdge{a, b} {
		if st := e.srv.Telemetry().Status(); !st.Enrolled || !st.Sharing || st.EdgeID != edges[0].ID {
			t.Fatalf("replica status %+v, want sharing as %s", st, edges[0].ID)
		}
	}

	// Both send at once, many batches.
	const rounds = 15
	for _, e := range []*pgEdge{a, b} {
		wg.Go(func() {
			for i := range rounds {
				if st, err := chat(e.base, key, fmt.Sprintf("round %d", i)); err != nil || st != 200 {
					t.Errorf("chat: %d %v", st, err)
					return
				}
				e.srv.Telemetry().Flush(ctx)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	var recs []edge.RequestRecord
	testutil.Eventually(t, 10*time.Second, "every request's metadata", func() bool {
		r, err := f.admin.Requests(ctx, org, time.Time{}, 100000)
		if err != nil {
			t.Fatal(err)
		}
		recs = r
		return len(r) == 2*rounds
	})
	want := edgeTotals(recs)
	waitReplicas := func(what string) {
		t.Helper()
		for _, e := range []*pgEdge{a, b} {
			e.srv.Telemetry().Flush(ctx)
		}
		testutil.Eventually(t, 20*time.Second, what, func() bool {
			return cp.totals(cpOrg) == want && b.srv.Telemetry().Status().Spool.Batches == 0
		})
	}
	waitReplicas("the control plane's totals to equal both edges' metadata")

	entries := ledgerAt(t, a.srv.AdminAddr())
	seqs, from, enrollments := map[int64]bool{}, map[string]int{}, 0
	for _, e := range entries {
		if e.Kind == telemetry.KindEnrollment {
			enrollments++
			continue
		}
		if seqs[e.Seq] {
			t.Fatalf("sequence number %d in the ledger twice", e.Seq)
		}
		seqs[e.Seq] = true
		from[e.Instance]++
	}
	if enrollments != 1 || from["replica-a"] == 0 || from["replica-b"] == 0 || len(seqs) < rounds {
		t.Fatalf("ledger: %d enrollment exchanges, batches by replica %v, %d batches", enrollments, from, len(seqs))
	}
	if other := ledgerAt(t, b.srv.AdminAddr()); len(other) != len(entries) {
		t.Fatalf("replica b lists %d ledger entries, replica a %d", len(other), len(entries))
	}
	// Each replica's batches carry the random instance id its process
	// drew, which the ledger shows as it left; the control plane counts
	// two processes behind the one edge id.
	instA, instB := a.srv.Telemetry().InstanceID(), b.srv.Telemetry().InstanceID()
	if !wire.ValidInstance(instA) || !wire.ValidInstance(instB) || instA == instB ||
		a.srv.Telemetry().Status().Instance != instA || b.srv.Telemetry().Status().Instance != instB {
		t.Fatalf("replica instance ids %q and %q: not two distinct valid ids, or not in their status", instA, instB)
	}
	sentBy := map[string]int{}
	for _, e := range entries {
		if e.Kind == telemetry.KindEnrollment {
			continue
		}
		var bt wire.UsageBatch
		if err := json.Unmarshal(e.Batch, &bt); err != nil {
			t.Fatal(err)
		}
		sentBy[bt.Instance]++
	}
	if len(sentBy) != 2 || sentBy[instA] == 0 || sentBy[instB] == 0 {
		t.Fatalf("batches in the ledger by instance %v, want both replicas' (%s, %s)", sentBy, instA, instB)
	}
	if got, err := cp.store.EdgeInstances(ctx, cpOrg, time.Now().Add(-controlplane.InstanceWindow)); err != nil || got[edges[0].ID] != (controlplane.Instances{Known: 2}) {
		t.Fatalf("the control plane counts instances %+v (%v), want 2 for %s", got, err, edges[0].ID)
	}
	for _, e := range []*pgEdge{a, b} {
		if st := e.srv.Telemetry().Status(); strings.Contains(st.LastError, "duplicate") {
			t.Fatalf("a replica saw a duplicate acknowledgement: %+v", st)
		}
	}

	// A replica claims two batches, publishes the first, and stops
	// before either is acknowledged.
	enr, _, err := a.srv.Telemetry().State().Enrollment(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var last wire.UsageBatch
	if err := json.Unmarshal(entries[len(entries)-1].Batch, &last); err != nil {
		t.Fatal(err)
	}
	seed, err := sf.keyring().Open(ctx, telemetry.KeyOrg, keyring.PurposeTelemetry, "nats-seed", enr.SealedSeed)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := nkeys.FromSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(enr.NATSURL, natsbus.JWTAndKey(enr.UserJWT, kp), nats.CustomInboxPrefix(enr.InboxPrefix), nats.NoReconnect())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	left := a.srv.Telemetry().State()
	wantRequests := want.Requests
	for i := range 2 {
		seq, err := left.NextSeq(ctx)
		if err != nil {
			t.Fatal(err)
		}
		bt := last
		bt.Seq = seq
		data, err := wire.Encode(&bt)
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.admin.Pool().Exec(ctx, `INSERT INTO telemetry_spool (seq, data, holder, lease_until) VALUES ($1, $2, 'replica-stopped', now() + make_interval(secs => $3))`,
			seq, data, sharedLease.Seconds())
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if ack, err := js.Publish(ctx, enr.Subject, data, jetstream.WithMsgID(wire.MsgID(enr.EdgeID, seq))); err != nil || ack.Duplicate {
				t.Fatalf("publish as the stopped replica: %+v %v", ack, err)
			}
		}
		for _, r := range last.Rows {
			wantRequests += r.Requests
		}
	}
	// Replica a's link stops too (its process would be gone).
	a.srv.Telemetry().Close()
	testutil.Eventually(t, 20*time.Second, "the other replica to send what the stopped one held", func() bool {
		return b.srv.Telemetry().Status().Spool.Batches == 0
	})
	testutil.Eventually(t, 10*time.Second, "the control plane to store both batches", func() bool {
		return cp.totals(cpOrg).Requests >= wantRequests
	})
	if got := cp.totals(cpOrg).Requests; got != wantRequests {
		t.Fatalf("the control plane holds %d requests, want %d: a batch stored twice or lost", got, wantRequests)
	}
	// The batch the stopped replica had published came back as a
	// duplicate: delivered, not an unexplained duplicate kept to retry.
	_, _, body := raw(t, "GET", "http://"+b.srv.AdminAddr()+"/metrics", nil, "")
	if !strings.Contains(string(body), "\ncodex_edge_telemetry_unexpected_duplicates_total 0\n") {
		t.Fatal("the replica that took over counted an unexpected duplicate acknowledgement")
	}

	// The seed is sealed: in no telemetry table in plaintext.
	conn, err := pgx.Connect(ctx, owner)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for _, table := range []string{"telemetry_state", "telemetry_spool", "telemetry_ledger", "telemetry_data_keys"} {
		var dump string
		if err := conn.QueryRow(ctx, fmt.Sprintf(`SELECT COALESCE(string_agg(x::text, E'\n'), '') FROM %s x`, table)).Scan(&dump); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(dump, string(seed)) || table == "telemetry_state" && !strings.Contains(dump, enr.EdgeID) {
			t.Fatalf("table %s: the seed in plaintext, or not the enrollment row", table)
		}
	}
}

// TestTelemetrySharedStoreDownLosesNoWindow: while Postgres is down the
// switch stays on (the store is unreachable, not switched off), and a
// window that closes cannot be numbered or spooled: it waits in memory and
// is spooled and sent once Postgres is back, so the control plane's totals
// still equal the edge's metadata.
func TestTelemetrySharedStoreDownLosesNoWindow(t *testing.T) {
	cp := newControlPlane(t)
	cpOrg := cp.org()
	c := pgtest.NewCluster(t)
	_, app := c.FreshDB(t)
	f := newPGFleet(t, app)
	org := f.addOrg("acme")
	_, key := f.addKey(org)
	// No deadline: a flush abandoned half-way would leave the aggregator
	// waiting for its caller (Aggregator.Flush).
	ctx := t.Context()
	sf := &sharedFleet{t: t, f: f, cp: cp, token: cp.token(cpOrg)}
	e := sf.start("replica-a")
	if err := sharingAt(e.srv.AdminAddr(), true); err != nil {
		t.Fatal(err)
	}
	send := func(n int, what string) {
		t.Helper()
		for i := range n {
			if st, err := chat(e.base, key, fmt.Sprintf("%s %d", what, i)); err != nil || st != 200 {
				t.Fatalf("chat: %d %v", st, err)
			}
		}
	}
	send(3, "before")
	flushTelemetry(t, ctx, e.srv)
	testutil.Eventually(t, 20*time.Second, "the first window sent", func() bool { return cp.totals(cpOrg).Requests == 3 })

	c.Stop()
	send(4, "during") // served from the key cache; metadata waits in its queue
	e.srv.Telemetry().Flush(ctx)
	if st := e.srv.Telemetry().Status(); !st.Sharing || !st.Enrolled || st.LastError == "" {
		t.Fatalf("a window closed with Postgres down: status %+v, want sharing kept on and the error shown", st)
	}
	c.Start()
	var recs []edge.RequestRecord
	testutil.Eventually(t, 30*time.Second, "every request's metadata", func() bool {
		r, err := f.admin.Requests(ctx, org, time.Time{}, 100000)
		recs = r
		return err == nil && len(r) == 7
	})
	want := edgeTotals(recs)
	testutil.Eventually(t, 30*time.Second, "the control plane's totals to equal the edge's metadata", func() bool {
		return cp.totals(cpOrg) == want
	})
}
