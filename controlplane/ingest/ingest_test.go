package ingest_test

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/persiv/codex/controlplane"
	"github.com/persiv/codex/controlplane/ingest"
	"github.com/persiv/codex/controlplane/natsauth"
	"github.com/persiv/codex/controlplane/natsbus"
	"github.com/persiv/codex/controlplane/sealer"
	"github.com/persiv/codex/controlplane/store/storetest"
	"github.com/persiv/codex/controlplane/testenv"
	"github.com/persiv/codex/shared/wire"
)

var start = time.Now().UTC().Truncate(time.Hour).Add(-2 * time.Hour)

func batch(ed testenv.Edge, seq int64) *wire.UsageBatch {
	return storetest.Batch(ed.OrgID, ed.EdgeID, seq, start.Add(time.Duration(seq)*time.Minute), 3)
}

func encode(t testing.TB, b *wire.UsageBatch) []byte {
	t.Helper()
	data, err := wire.Encode(b)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func publish(ctx context.Context, js jetstream.JetStream, subject string, data []byte, msgID string) (*jetstream.PubAck, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var opts []jetstream.PublishOpt
	if msgID != "" {
		opts = append(opts, jetstream.WithMsgID(msgID))
	}
	return js.Publish(ctx, subject, data, opts...)
}

func requests(t testing.TB, s controlplane.Store, orgID string) int64 {
	t.Helper()
	rows, err := s.Usage(context.Background(), controlplane.UsageQuery{OrgID: orgID, From: start.Add(-time.Hour), To: start.Add(6 * time.Hour), Step: controlplane.Hour})
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, r := range rows {
		n += r.Requests
	}
	return n
}

// flakyStore commits a batch but reports a failure for the first few, as
// a store whose commit acknowledgement is lost would: the message is
// redelivered and must not be counted twice.
type flakyStore struct {
	controlplane.Store
	failures atomic.Int64
}

func (f *flakyStore) IngestBatch(ctx context.Context, b *wire.UsageBatch, at time.Time) (bool, error) {
	stored, err := f.Store.IngestBatch(ctx, b, at)
	if err == nil && f.failures.Add(-1) >= 0 {
		return false, errors.New("injected: commit acknowledgement lost")
	}
	return stored, err
}

func TestBatchesStoredExactlyOnce(t *testing.T) {
	flaky := &flakyStore{}
	flaky.failures.Store(3)
	env := testenv.New(t, testenv.Options{Store: func(s controlplane.Store) controlplane.Store { flaky.Store = s; return flaky }})
	org := env.Org(t)
	ed := env.EnrollEdge(t, org)
	js := ed.JetStream(t)
	ctx := context.Background()

	const n = 40
	for seq := int64(1); seq <= n; seq++ {
		data := encode(t, batch(ed, seq))
		if _, err := publish(ctx, js, ed.Subject, data, wire.MsgID(ed.EdgeID, seq)); err != nil {
			t.Fatalf("publish %d: %v", seq, err)
		}
	}
	// The same message ids again: JetStream drops those still in its
	// short duplicate window, the store the others.
	var dropped int64
	for seq := int64(1); seq <= 5; seq++ {
		ack, err := publish(ctx, js, ed.Subject, encode(t, batch(ed, seq)), wire.MsgID(ed.EdgeID, seq))
		if err != nil {
			t.Fatalf("re-sent msg id %d: %v", seq, err)
		}
		if ack.Duplicate {
			dropped++
		}
	}
	// Re-sent without a message id (as after the duplicate window): the
	// store drops them.
	for seq := int64(6); seq <= 10; seq++ {
		if _, err := publish(ctx, js, ed.Subject, encode(t, batch(ed, seq)), ""); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 30*time.Second, "every batch settled", func() bool {
		s := env.Ingester.Stats()
		// The 3 batches whose first attempt failed after committing come
		// back as duplicates, like the 5 re-sent without a message id and
		// those re-sent with one that JetStream did not drop.
		return s.Stored == n-3 && s.Duplicates == 5+3+(5-dropped)
	})
	if got, want := requests(t, env.Store, org), int64(n*3*2); got != want {
		t.Fatalf("stored %d requests, want %d: a batch was counted twice or lost", got, want)
	}
	st := env.Ingester.Stats()
	if st.Errors != 3 {
		t.Errorf("errors = %d, want the 3 injected", st.Errors)
	}
	for reason, c := range st.Rejected {
		if c != 0 {
			t.Errorf("rejected %d for %s", c, reason)
		}
	}
	got, err := env.Store.Edge(ctx, org, ed.EdgeID)
	if err != nil || got.LastSeen.IsZero() || !got.Sharing {
		t.Fatalf("edge after ingest: %+v, %v", got, err)
	}
}

func TestInvalidBatchesRejectedAndCounted(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	org, other := env.Org(t), env.Org(t)
	ed := env.EnrollEdge(t, org)
	sibling := env.EnrollEdge(t, org)
	revoked := env.EnrollEdge(t, org)
	js := ed.JetStream(t)
	ctx := context.Background()

	withField := func(b *wire.UsageBatch, field string) []byte {
		var m map[string]any
		if err := json.Unmarshal(encode(t, b), &m); err != nil {
			t.Fatal(err)
		}
		m[field] = "the prompt"
		data, _ := json.Marshal(m)
		return data
	}
	replace := func(b *wire.UsageBatch, old, new string) []byte {
		return []byte(strings.Replace(string(encode(t, b)), old, new, 1))
	}
	otherOrg := batch(ed, 4)
	otherOrg.OrgID = other
	otherEdge := batch(ed, 5)
	otherEdge.EdgeID = sibling.EdgeID

	cases := []struct {
		name   string
		data   []byte
		msgID  string
		reason string
	}{
		{"unknown field", withField(batch(ed, 1), "content"), "", "malformed"},
		{"oversized string", replace(batch(ed, 2), `"model":"gpt-4o"`, `"model":"`+strings.Repeat("x", 300)+`"`), "", "malformed"},
		{"oversized number", replace(batch(ed, 3), `"cost_nano_usd":1000`, `"cost_nano_usd":90071992547409910`), "", "malformed"},
		{"mismatched org", encode(t, otherOrg), "", "mismatch"},
		{"mismatched edge", encode(t, otherEdge), "", "mismatch"},
		{"mismatched msg id", encode(t, batch(ed, 6)), wire.MsgID(ed.EdgeID, 7), "msg_id"},
		{"window in the future", encode(t, storetest.Batch(ed.OrgID, ed.EdgeID, 8, time.Now().Add(time.Hour), 1)), "", "future"},
	}
	for _, tc := range cases {
		if _, err := publish(ctx, js, ed.Subject, tc.data, tc.msgID); err != nil {
			t.Fatalf("%s: publish: %v", tc.name, err)
		}
	}
	// The control plane's own user may publish anywhere: batches for
	// an edge that does not exist or was revoked are refused by ingest.
	sjs, err := jetstream.New(env.Service)
	if err != nil {
		t.Fatal(err)
	}
	ghost := batch(ed, 1)
	ghost.EdgeID = "edge_ghost"
	if _, err := publish(ctx, sjs, wire.Subject(org, "edge_ghost"), encode(t, ghost), ""); err != nil {
		t.Fatal(err)
	}
	if err := env.Enroll.Revoke(ctx, org, revoked.EdgeID); err != nil {
		t.Fatal(err)
	}
	if _, err := publish(ctx, sjs, revoked.Subject, encode(t, batch(revoked, 1)), ""); err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"malformed": 3, "mismatch": 2, "msg_id": 1, "future": 1, "unknown_edge": 1, "revoked": 1}
	testenv.Eventually(t, 20*time.Second, "all rejections counted", func() bool {
		got := env.Ingester.Stats().Rejected
		for k, v := range want {
			if got[k] != v {
				return false
			}
		}
		return true
	})
	if st := env.Ingester.Stats(); st.Stored != 0 {
		t.Fatalf("stored %d invalid batches", st.Stored)
	}
	if got := requests(t, env.Store, org) + requests(t, env.Store, other); got != 0 {
		t.Fatalf("invalid batches reached the store: %d requests", got)
	}
	// Terminated, not left for redelivery.
	stream, err := sjs.Stream(ctx, ingest.StreamName(org))
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "stream drained", func() bool {
		info, err := stream.Info(ctx)
		return err == nil && info.State.Msgs == 0
	})
}

// permErrors signals on ch each permission violation the server reports.
func permErrors(ch chan<- struct{}) nats.Option {
	return nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrPermissionViolation) || strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	})
}

func TestNATSConfinesEdgesToTheirSubject(t *testing.T) {
	env := testenv.New(t, testenv.Options{NoIngest: true})
	org, other := env.Org(t), env.Org(t)
	ed := env.EnrollEdge(t, org)
	sibling := env.EnrollEdge(t, org)
	foreign := env.EnrollEdge(t, other)
	ctx := context.Background()

	violations := make(chan struct{}, 16)
	nc, err := ed.Connect(permErrors(violations))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if _, err := publish(ctx, js, ed.Subject, encode(t, batch(ed, 1)), ""); err != nil {
		t.Fatalf("own subject refused: %v", err)
	}
	for name, subj := range map[string]string{
		"another org's edge":      foreign.Subject,
		"another edge of the org": sibling.Subject,
		"a made-up edge":          wire.Subject(org, "edge_x"),
		"the JetStream API":       "$JS.API.STREAM.LIST",
	} {
		// A denied publish shows up as a JetStream timeout: keep it short.
		dctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		_, err := publish(dctx, js, subj, encode(t, batch(ed, 2)), "")
		cancel()
		if err == nil {
			t.Errorf("%s: publish accepted", name)
		}
		select {
		case <-violations:
		case <-time.After(2 * time.Second):
			t.Errorf("%s: no permissions violation reported", name)
		}
	}
	for _, subj := range []string{"codex.usage.v1.>", "_INBOX.>", foreign.InboxPrefix + ".>", "_CODEX_CP.>"} {
		if _, err := nc.SubscribeSync(subj); err != nil {
			t.Fatal(err)
		}
		nc.Flush()
		select {
		case <-violations:
		case <-time.After(2 * time.Second):
			t.Errorf("subscribe %s: no permissions violation reported", subj)
		}
	}
	sjs, _ := jetstream.New(env.Service)
	stream, err := sjs.Stream(ctx, ingest.StreamName(org))
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(wire.SubjectPrefix+".>"))
	if err != nil {
		t.Fatal(err)
	}
	if len(info.State.Subjects) != 1 || info.State.Subjects[ed.Subject] != 1 {
		t.Fatalf("stream holds %v; want only the edge's own message", info.State.Subjects)
	}
}

func TestLeakedOrgKeyMintsNothingOutsideItsOrg(t *testing.T) {
	env := testenv.New(t, testenv.Options{NoIngest: true})
	org, other := env.Org(t), env.Org(t)
	env.EnrollEdge(t, org) // gives org its signing key
	foreign := env.EnrollEdge(t, other)

	sealed, err := os.ReadFile(filepath.Join(env.Dir, "nats-keys", "orgs", org+".nk.sealed"))
	if err != nil {
		t.Fatal(err)
	}
	seed, err := env.Sealer.Open(context.Background(), sealer.Binding{Purpose: natsauth.SeedPurpose, Name: "org/" + org}, sealed)
	if err != nil {
		t.Fatal(err)
	}
	orgKey, err := nkeys.FromSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	// Impersonate the foreign edge: its name, a tag for its org, and
	// permissions asked for in the JWT itself.
	user, _ := nkeys.CreateUser()
	pub, _ := user.PublicKey()
	uc := jwt.NewUserClaims(pub)
	uc.Name = foreign.EdgeID
	uc.IssuerAccount = env.Auth.IngestAccount()
	uc.Tags.Add("org:" + other)
	uc.UserPermissionLimits = jwt.UserPermissionLimits{}
	forged, err := uc.Encode(orgKey)
	if err != nil {
		t.Fatal(err)
	}
	violations := make(chan struct{}, 4)
	nc, err := nats.Connect(env.NATS.ClientURL(), natsbus.JWTAndKey(forged, user), nats.CustomInboxPrefix("_INBOX."+foreign.EdgeID), permErrors(violations))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if _, err := publish(context.Background(), js, foreign.Subject, []byte("{}"), ""); err == nil {
		t.Fatal("a user minted with org A's key published on org B's subject")
	}
	<-violations

	// A JWT that asks for wider permissions is refused outright.
	uc.Permissions.Pub.Allow.Add(">")
	wide, _ := uc.Encode(orgKey)
	if nc, err := nats.Connect(env.NATS.ClientURL(), natsbus.JWTAndKey(wide, user)); err == nil {
		nc.Close()
		t.Fatal("scoped user with its own permissions connected")
	}
}

func TestRevokedEdgeCannotConnectOrPublish(t *testing.T) {
	env := testenv.New(t, testenv.Options{NoIngest: true})
	org := env.Org(t)
	ed := env.EnrollEdge(t, org)
	ctx := context.Background()
	closed := make(chan struct{})
	nc, err := ed.Connect(nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if _, err := publish(ctx, js, ed.Subject, encode(t, batch(ed, 1)), ""); err != nil {
		t.Fatal(err)
	}
	if err := env.Enroll.Revoke(ctx, org, ed.EdgeID); err != nil {
		t.Fatal(err)
	}
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the revoked edge's connection stayed open")
	}
	if _, err := publish(ctx, js, ed.Subject, encode(t, batch(ed, 2)), ""); err == nil {
		t.Fatal("revoked edge published")
	}
	if nc, err := ed.Connect(); err == nil {
		nc.Close()
		t.Fatal("revoked edge connected")
	}
	// The revocation is persisted: a restarted authority keeps it.
	again, err := natsauth.Open(ctx, filepath.Join(env.Dir, "nats-keys"), natsauth.Options{Sealer: env.Sealer})
	if err != nil {
		t.Fatal(err)
	}
	claims, err := jwt.DecodeAccountClaims(again.IngestJWT())
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := ed.Key.PublicKey()
	if _, ok := claims.Revocations[pub]; !ok {
		t.Fatal("revocation lost on reopening the authority")
	}
}

func TestAnonymousRefused(t *testing.T) {
	env := testenv.New(t, testenv.Options{NoIngest: true})
	if nc, err := nats.Connect(env.NATS.ClientURL(), nats.NoReconnect()); err == nil {
		nc.Close()
		t.Fatal("anonymous connection accepted")
	}
	if nc, err := nats.Connect(env.NATS.ClientURL(), nats.UserInfo("codex", "codex"), nats.NoReconnect()); err == nil {
		nc.Close()
		t.Fatal("user/password connection accepted")
	}
	// A user of an account the operator never signed.
	acct, _ := nkeys.CreateAccount()
	user, _ := nkeys.CreateUser()
	pub, _ := user.PublicKey()
	uj, _ := jwt.NewUserClaims(pub).Encode(acct)
	if nc, err := nats.Connect(env.NATS.ClientURL(), natsbus.JWTAndKey(uj, user), nats.NoReconnect()); err == nil {
		nc.Close()
		t.Fatal("user of an unknown account accepted")
	}
}

func BenchmarkIngestThroughput(b *testing.B) {
	// Every batch is published before the ingest catches up: raise the
	// stream's bounds above the whole run.
	env := testenv.New(b, testenv.Options{Limits: ingest.Limits{MaxPendingPerEdge: 1 << 20, MaxBytes: 1 << 30}})
	org := env.Org(b)
	ed := env.EnrollEdge(b, org)
	js := ed.JetStream(b)
	const rows = 50
	data := make([][]byte, 0, b.N)
	b.ReportAllocs()
	var seq int64
	began := time.Now()
	for b.Loop() {
		seq++
		if len(data) < int(seq) {
			at := time.Now().UTC().Truncate(time.Minute).Add(-30 * 24 * time.Hour).Add(time.Duration(seq) * time.Minute)
			data = append(data, encode(b, storetest.Batch(ed.OrgID, ed.EdgeID, seq, at, rows)))
		}
		if _, err := js.PublishAsync(ed.Subject, data[seq-1], jetstream.WithMsgID(wire.MsgID(ed.EdgeID, seq))); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("publishes not acknowledged")
	}
	deadline := time.Now().Add(5 * time.Minute)
	for st := env.Ingester.Stats(); st.Stored < seq; st = env.Ingester.Stats() {
		if time.Now().After(deadline) || st.Errors > 0 {
			b.Fatalf("ingest stalled: %+v", st)
		}
		for reason, n := range st.Rejected {
			if n > 0 {
				b.Fatalf("benchmark batches rejected (%s)", reason)
			}
		}
		time.Sleep(time.Millisecond)
	}
	// Until the last batch is stored, not just published.
	sec := time.Since(began).Seconds()
	b.ReportMetric(float64(seq)/sec, "batches/s")
	b.ReportMetric(float64(seq*rows)/sec, "rows/s")
}

// TestForeignMsgIDCannotDropABatch: an edge of one org publishing junk on
// its own subject under another org's edge's Nats-Msg-Id does not make
// JetStream drop that edge's real batch as a duplicate.
func TestForeignMsgIDCannotDropABatch(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	attacker := env.EnrollEdge(t, env.Org(t))
	victim := env.EnrollEdge(t, env.Org(t))
	ajs := attacker.JetStream(t)
	vjs := victim.JetStream(t)
	ctx := context.Background()

	junk := encode(t, batch(attacker, 1))
	if _, err := publish(ctx, ajs, attacker.Subject, junk, wire.MsgID(victim.EdgeID, 1)); err != nil {
		t.Fatal(err)
	}
	ack, err := publish(ctx, vjs, victim.Subject, encode(t, batch(victim, 1)), wire.MsgID(victim.EdgeID, 1))
	if err != nil {
		t.Fatal(err)
	}
	if ack.Duplicate {
		t.Fatalf("the victim's batch 1 was acknowledged as a duplicate of the attacker's junk (stream %s)", ack.Stream)
	}
	testenv.Eventually(t, 20*time.Second, "the victim's batch stored", func() bool { return requests(t, env.Store, victim.OrgID) == 3*2 })
	testenv.Eventually(t, 20*time.Second, "the junk rejected", func() bool { return env.Ingester.Stats().Rejected["msg_id"] == 1 })
}

// TestStreamPerOrg: each org's edges publish into their org's own stream,
// which listens on that org's subjects only, with a short duplicate window.
func TestStreamPerOrg(t *testing.T) {
	env := testenv.New(t, testenv.Options{NoIngest: true})
	orgA, orgB := env.Org(t), env.Org(t)
	a1, a2, b := env.EnrollEdge(t, orgA), env.EnrollEdge(t, orgA), env.EnrollEdge(t, orgB)
	ctx := context.Background()
	for _, ed := range []testenv.Edge{a1, a2, b} {
		js := ed.JetStream(t)
		ack, err := publish(ctx, js, ed.Subject, encode(t, batch(ed, 1)), wire.MsgID(ed.EdgeID, 1))
		if err != nil {
			t.Fatal(err)
		}
		if want := ingest.StreamName(ed.OrgID); ack.Stream != want {
			t.Fatalf("edge of %s stored in %s, want %s", ed.OrgID, ack.Stream, want)
		}
	}
	sjs, _ := jetstream.New(env.Service)
	for org, want := range map[string]map[string]uint64{orgA: {a1.Subject: 1, a2.Subject: 1}, orgB: {b.Subject: 1}} {
		stream, err := sjs.Stream(ctx, ingest.StreamName(org))
		if err != nil {
			t.Fatal(err)
		}
		info, err := stream.Info(ctx, jetstream.WithSubjectFilter(">"))
		if err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(info.State.Subjects, want) {
			t.Errorf("stream of %s holds %v, want %v", org, info.State.Subjects, want)
		}
		if got := info.Config.Subjects; len(got) != 1 || got[0] != wire.SubjectPrefix+"."+org+".*" {
			t.Errorf("stream of %s listens on %v", org, got)
		}
		if info.Config.Duplicates != ingest.DefaultDuplicates {
			t.Errorf("stream of %s de-duplicates over %v, want %v", org, info.Config.Duplicates, ingest.DefaultDuplicates)
		}
	}
	if _, err := sjs.Stream(ctx, ingest.LegacyStreamName); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("shared stream: %v, want none", err)
	}
}

// TestRetireLegacyStream: a data directory from a version with one stream
// for all orgs. Setup moves the legacy stream off the usage subjects,
// stores what it held, deletes it, and edges publish into their org's
// stream from then on.
func TestRetireLegacyStream(t *testing.T) {
	env := testenv.New(t, testenv.Options{NoIngest: true})
	org := env.Org(t)
	ed := env.EnrollEdge(t, org)
	ctx := context.Background()
	sjs, _ := jetstream.New(env.Service)

	// The old layout: no per-org stream, the shared one with its consumer.
	if err := sjs.DeleteStream(ctx, ingest.StreamName(org)); err != nil {
		t.Fatal(err)
	}
	legacy, err := sjs.CreateStream(ctx, jetstream.StreamConfig{
		Name: ingest.LegacyStreamName, Subjects: []string{wire.SubjectPrefix + ".>"}, Retention: jetstream.WorkQueuePolicy,
		Storage: jetstream.FileStorage, MaxAge: 7 * 24 * time.Hour, Duplicates: 10 * time.Minute, MaxMsgSize: wire.MaxBatchBytes,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := legacy.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: ingest.ConsumerName, FilterSubject: wire.SubjectPrefix + ".>", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	js := ed.JetStream(t)
	for seq := int64(1); seq <= 3; seq++ {
		ack, err := publish(ctx, js, ed.Subject, encode(t, batch(ed, seq)), wire.MsgID(ed.EdgeID, seq))
		if err != nil || ack.Stream != ingest.LegacyStreamName {
			t.Fatalf("publish into the legacy stream: %+v %v", ack, err)
		}
	}

	// A restart of the new version.
	in := &ingest.Ingester{Store: env.Store, JS: sjs}
	if err := in.Setup(ctx, env.Auth.Orgs()); err != nil {
		t.Fatal(err)
	}
	if st := in.Stats(); st.Stored != 3 {
		t.Fatalf("retiring stored %+v, want the 3 waiting batches", st)
	}
	if got := requests(t, env.Store, org); got != 3*3*2 {
		t.Fatalf("stored %d requests from the legacy stream, want %d", got, 3*3*2)
	}
	if _, err := sjs.Stream(ctx, ingest.LegacyStreamName); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("legacy stream after Setup: %v, want deleted", err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- in.Run(rctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	ack, err := publish(ctx, js, ed.Subject, encode(t, batch(ed, 4)), wire.MsgID(ed.EdgeID, 4))
	if err != nil || ack.Stream != ingest.StreamName(org) {
		t.Fatalf("publish after the upgrade: %+v %v", ack, err)
	}
	testenv.Eventually(t, 20*time.Second, "batch 4 stored", func() bool { return in.Stats().Stored == 4 })
	// A second start finds nothing to retire.
	if err := (&ingest.Ingester{Store: env.Store, JS: sjs}).Setup(ctx, env.Auth.Orgs()); err != nil {
		t.Fatal(err)
	}
}

// TestInterruptedRetirement: a retirement stopped after moving the legacy
// stream off the usage subjects (its consumer already gone) is finished by
// the next Setup.
func TestInterruptedRetirement(t *testing.T) {
	env := testenv.New(t, testenv.Options{NoIngest: true})
	org := env.Org(t)
	ed := env.EnrollEdge(t, org)
	ctx := context.Background()
	sjs, _ := jetstream.New(env.Service)
	if err := sjs.DeleteStream(ctx, ingest.StreamName(org)); err != nil {
		t.Fatal(err)
	}
	if _, err := sjs.CreateStream(ctx, jetstream.StreamConfig{Name: ingest.LegacyStreamName, Subjects: []string{wire.SubjectPrefix + ".>"}, Retention: jetstream.WorkQueuePolicy}); err != nil {
		t.Fatal(err)
	}
	js := ed.JetStream(t)
	if _, err := publish(ctx, js, ed.Subject, encode(t, batch(ed, 1)), wire.MsgID(ed.EdgeID, 1)); err != nil {
		t.Fatal(err)
	}
	// Interrupted: moved off the subjects, nothing drained.
	if _, err := sjs.UpdateStream(ctx, jetstream.StreamConfig{Name: ingest.LegacyStreamName, Subjects: []string{"codex.usage.retired"}, Retention: jetstream.WorkQueuePolicy}); err != nil {
		t.Fatal(err)
	}
	in := &ingest.Ingester{Store: env.Store, JS: sjs}
	if err := in.Setup(ctx, env.Auth.Orgs()); err != nil {
		t.Fatal(err)
	}
	if in.Stats().Stored != 1 || requests(t, env.Store, org) != 3*2 {
		t.Fatalf("after resuming: %+v", in.Stats())
	}
	if _, err := sjs.Stream(ctx, ingest.LegacyStreamName); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("legacy stream: %v, want deleted", err)
	}
}

// TestEdgeOverItsLimitsRefusedAlone: an edge past its pending batches, or
// an org past its stream's bytes, is refused; another edge of the org, and
// another org, still publish.
func TestEdgeOverItsLimitsRefusedAlone(t *testing.T) {
	const maxBytes = 256 << 10
	env := testenv.New(t, testenv.Options{NoIngest: true, Limits: ingest.Limits{MaxPendingPerEdge: 3, MaxBytes: maxBytes}})
	orgA, orgB := env.Org(t), env.Org(t)
	flood, sibling, other := env.EnrollEdge(t, orgA), env.EnrollEdge(t, orgA), env.EnrollEdge(t, orgB)
	fjs := flood.JetStream(t)
	sjs := sibling.JetStream(t)
	ojs := other.JetStream(t)
	ctx := context.Background()

	for seq := int64(1); seq <= 3; seq++ {
		if _, err := publish(ctx, fjs, flood.Subject, encode(t, batch(flood, seq)), wire.MsgID(flood.EdgeID, seq)); err != nil {
			t.Fatalf("batch %d within the limit: %v", seq, err)
		}
	}
	_, err := publish(ctx, fjs, flood.Subject, encode(t, batch(flood, 4)), wire.MsgID(flood.EdgeID, 4))
	if err == nil || !strings.Contains(err.Error(), "maximum messages per subject") {
		t.Fatalf("4th pending batch of one edge: %v, want refused", err)
	}
	if _, err := publish(ctx, sjs, sibling.Subject, encode(t, batch(sibling, 1)), wire.MsgID(sibling.EdgeID, 1)); err != nil {
		t.Fatalf("another edge of the org refused: %v", err)
	}

	// Batches of over half the org's bytes: the second is refused.
	rows := 50
	for len(encode(t, storetest.Batch(orgA, sibling.EdgeID, 1, start, rows))) < maxBytes/2 {
		rows += 50
	}
	big := func(ed testenv.Edge, seq int64) []byte {
		return encode(t, storetest.Batch(ed.OrgID, ed.EdgeID, seq, start.Add(time.Duration(seq)*time.Minute), rows))
	}
	if _, err := publish(ctx, sjs, sibling.Subject, big(sibling, 2), wire.MsgID(sibling.EdgeID, 2)); err != nil {
		t.Fatalf("large batch: %v", err)
	}
	_, err = publish(ctx, sjs, sibling.Subject, big(sibling, 3), wire.MsgID(sibling.EdgeID, 3))
	if err == nil || !strings.Contains(err.Error(), "maximum bytes") {
		t.Fatalf("batch past the org's bytes: %v, want refused", err)
	}
	if _, err := publish(ctx, ojs, other.Subject, big(other, 1), wire.MsgID(other.EdgeID, 1)); err != nil {
		t.Fatalf("another org refused: %v", err)
	}
	stream, err := jetstream.New(env.Service)
	if err != nil {
		t.Fatal(err)
	}
	for _, org := range []string{orgA, orgB} {
		s, err := stream.Stream(ctx, ingest.StreamName(org))
		if err != nil {
			t.Fatal(err)
		}
		if info, err := s.Info(ctx); err != nil || info.State.Bytes > maxBytes {
			t.Fatalf("stream of %s: %+v %v", org, info.State, err)
		}
	}
	// A batch is at most wire.MaxBatchBytes: the server's and the edge
	// user's max payload.
	if _, err := publish(ctx, ojs, other.Subject, make([]byte, wire.MaxBatchBytes+1), ""); err == nil {
		t.Fatal("a message over wire.MaxBatchBytes was accepted")
	}
}

// TestAccountLimits: the ingest account has explicit JetStream limits: no
// memory storage, and file storage that each org's stream reserves its
// MaxBytes from, so no org can be set up past it.
func TestAccountLimits(t *testing.T) {
	const orgBytes = 1 << 20
	env := testenv.New(t, testenv.Options{NoIngest: true, Limits: ingest.Limits{MaxBytes: orgBytes}, Account: natsauth.Limits{MaxStorage: 2 * orgBytes}})
	claims, err := jwt.DecodeAccountClaims(env.Auth.IngestJWT())
	if err != nil {
		t.Fatal(err)
	}
	if js := claims.Limits.JetStreamLimits; js.DiskStorage != 2*orgBytes || js.MemoryStorage != 0 {
		t.Fatalf("ingest account JetStream limits %+v", js)
	}
	ctx := context.Background()
	env.EnrollEdge(t, env.Org(t))
	env.EnrollEdge(t, env.Org(t))
	// A third org's stream does not fit: its enrollment fails, and no
	// credentials are issued.
	third := env.Org(t)
	tok, err := env.Enroll.CreateToken(ctx, third, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	if _, err := env.Enroll.Enroll(ctx, wire.EnrollRequest{Token: tok, PublicKey: pub, Name: "edge-3", Version: "0.1.0"}); err == nil || !strings.Contains(err.Error(), "insufficient") {
		t.Fatalf("enrollment past the account's storage: %v, want refused", err)
	}
	js, err := jetstream.New(env.Service)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "MEM", Subjects: []string{"mem.>"}, Storage: jetstream.MemoryStorage}); err == nil {
		t.Fatal("a memory stream was created in the ingest account")
	}
	// Reopening with other limits updates the account JWT.
	again, err := natsauth.Open(ctx, filepath.Join(env.Dir, "nats-keys"), natsauth.Options{Sealer: env.Sealer, Limits: natsauth.Limits{MaxStorage: 3 * orgBytes}})
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := jwt.DecodeAccountClaims(again.IngestJWT()); c == nil || c.Limits.JetStreamLimits.DiskStorage != 3*orgBytes {
		t.Fatal("the account's storage limit was not updated on reopening")
	}
}

// serviceJS connects as the control plane's own ingest user, as a second
// instance of the control plane would, until the test ends.
func serviceJS(t testing.TB, env *testenv.Env) jetstream.JetStream {
	t.Helper()
	creds, err := env.Auth.ServiceCreds()
	if err != nil {
		t.Fatal(err)
	}
	opt, err := natsbus.Creds(creds)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(env.NATS.ClientURL(), opt, nats.CustomInboxPrefix("_CODEX_CP"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// TestReconcileFollowsOtherInstances: two instances share the streams.
// An org enrolled through one (whose ingest is not running) is consumed
// by the other, which did not know the org at its start; once the org is
// deleted through the first, the other stops consuming its stream.
func TestReconcileFollowsOtherInstances(t *testing.T) {
	env := testenv.New(t, testenv.Options{NoIngest: true})
	ctx, cancel := context.WithCancel(context.Background())
	other := &ingest.Ingester{Store: env.Store, JS: serviceJS(t, env), ReconcileEvery: 20 * time.Millisecond}
	if err := other.Setup(ctx, nil); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- other.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})

	org := env.Org(t)
	ed := env.EnrollEdge(t, org) // through env's instance
	if _, err := publish(ctx, ed.JetStream(t), ed.Subject, encode(t, batch(ed, 1)), wire.MsgID(ed.EdgeID, 1)); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, "the batch stored by the other instance", func() bool {
		return other.Stats().Stored == 1 && requests(t, env.Store, org) == 3*2
	})
	if got := other.Consumed(); !slices.Equal(got, []string{org}) {
		t.Fatalf("other instance consumes %v, want [%s]", got, org)
	}

	if err := env.Ingester.DeleteOrg(ctx, org); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, "the other instance no longer consuming the deleted stream", func() bool {
		return len(other.Consumed()) == 0
	})
}
