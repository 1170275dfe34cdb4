package server_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/openai/openai-go/v3"

	"github.com/persiv/codex/controlplane"
	"github.com/persiv/codex/controlplane/enroll"
	"github.com/persiv/codex/controlplane/httpapi"
	"github.com/persiv/codex/controlplane/ingest"
	"github.com/persiv/codex/controlplane/natsauth"
	"github.com/persiv/codex/controlplane/natsbus"
	cpsqlite "github.com/persiv/codex/controlplane/store/sqlite"
	cptestenv "github.com/persiv/codex/controlplane/testenv"
	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/config"
	"github.com/persiv/codex/edge/fakeprovider"
	"github.com/persiv/codex/edge/internal/testutil"
	"github.com/persiv/codex/edge/keyring"
	"github.com/persiv/codex/edge/server"
	"github.com/persiv/codex/edge/store/sqlite"
	"github.com/persiv/codex/edge/telemetry"
	"github.com/persiv/codex/shared/wire"
)

// controlPlane is the control plane's real moving parts (NATS with
// JetStream, SQLite store, enrollment over HTTP, the ingest consumer) in
// one directory, so it can be stopped and started again on the same state.
// Edges reach NATS through a counting TCP relay, which tells the tests
// whether the edge opened any connection at all.
type controlPlane struct {
	t     *testing.T
	dir   string
	relay *relay
	tls   *tls.Config    // NATS requires TLS when set
	roots *x509.CertPool // trusts tls's certificate

	auth     *natsauth.Authority
	nats     *natsbus.Embedded
	sys, svc *nats.Conn
	store    *cpsqlite.Store
	enroll   *enroll.Service
	api      *httptest.Server
	apiConns atomic.Int64
	ingester *ingest.Ingester
	limits   ingest.Limits // of the ingest streams, from the next start
	cancel   context.CancelFunc
	done     chan struct{}
}

func newControlPlane(t *testing.T) *controlPlane {
	return newControlPlaneWith(t, false, ingest.Limits{})
}

func newControlPlaneTLS(t *testing.T, withTLS bool) *controlPlane {
	return newControlPlaneWith(t, withTLS, ingest.Limits{})
}

func newControlPlaneWith(t *testing.T, withTLS bool, limits ingest.Limits) *controlPlane {
	t.Helper()
	c := &controlPlane{t: t, dir: t.TempDir(), relay: newRelay(t), limits: limits}
	if withTLS {
		c.tls, c.roots = selfSigned(t)
	}
	c.start()
	t.Cleanup(func() {
		c.stop()
		if c.api != nil {
			c.api.Close()
		}
	})
	return c
}

func (c *controlPlane) start() {
	t := c.t
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var err error
	sealer, err := cptestenv.Sealer(c.dir)
	if err != nil {
		t.Fatal(err)
	}
	if c.auth, err = natsauth.Open(ctx, filepath.Join(c.dir, "nats-keys"), natsauth.Options{Sealer: sealer}); err != nil {
		t.Fatal(err)
	}
	if c.nats, err = natsbus.StartEmbedded(c.auth, natsbus.EmbeddedConfig{Dir: filepath.Join(c.dir, "nats"), Listen: "127.0.0.1:-1", TLS: c.tls}); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(c.nats.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	c.relay.target.Store(u.Host)
	c.sys = c.connect(c.auth.SystemCreds)
	c.svc = c.connect(c.auth.ServiceCreds)
	accounts := &natsbus.Accounts{Auth: c.auth, Sys: c.sys}
	if err := accounts.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if c.store, err = cpsqlite.Open(ctx, filepath.Join(c.dir, "cp.db")); err != nil {
		t.Fatal(err)
	}
	scheme := "nats://"
	if c.tls != nil {
		scheme = "tls://"
	}
	c.enroll = &enroll.Service{Store: c.store, Accounts: accounts, NATSURL: scheme + c.relay.addr()}
	if c.api == nil {
		api := &httpapi.API{Enroll: c.enroll, Ready: func(context.Context) error { return nil }}
		c.api = httptest.NewUnstartedServer(api.Handler())
		c.api.Config.ConnState = func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				c.apiConns.Add(1)
			}
		}
		c.api.Start()
	}
	js, err := jetstream.New(c.svc)
	if err != nil {
		t.Fatal(err)
	}
	c.ingester = &ingest.Ingester{Store: c.store, JS: js, Limits: c.limits}
	if err := c.ingester.Setup(ctx, c.auth.Orgs()); err != nil {
		t.Fatal(err)
	}
	c.enroll.Streams = c.ingester
	c.cancel, c.done = cancel, make(chan struct{})
	go func() {
		defer close(c.done)
		if err := c.ingester.Run(ctx); err != nil && ctx.Err() == nil {
			t.Error(err)
		}
	}()
}

// stop stops everything, NATS included; the state stays in dir.
func (c *controlPlane) stop() {
	if c.cancel == nil {
		return
	}
	c.cancel()
	<-c.done
	c.cancel = nil
	c.svc.Close()
	c.sys.Close()
	c.nats.Shutdown()
	c.store.Close()
}

func (c *controlPlane) connect(creds func() ([]byte, error)) *nats.Conn {
	c.t.Helper()
	b, err := creds()
	if err != nil {
		c.t.Fatal(err)
	}
	opt, err := natsbus.Creds(b)
	if err != nil {
		c.t.Fatal(err)
	}
	opts := []nats.Option{opt, nats.CustomInboxPrefix("_CODEX_CP")}
	if c.roots != nil {
		opts = append(opts, nats.Secure(&tls.Config{RootCAs: c.roots, MinVersion: tls.VersionTLS13}))
	}
	nc, err := nats.Connect(c.nats.ClientURL(), opts...)
	if err != nil {
		c.t.Fatal(err)
	}
	return nc
}

func (c *controlPlane) org() string {
	c.t.Helper()
	o := controlplane.Org{ID: controlplane.NewID("org"), Name: "Acme", CreatedAt: time.Now().UTC()}
	if err := c.store.CreateOrg(context.Background(), o); err != nil {
		c.t.Fatal(err)
	}
	return o.ID
}

func (c *controlPlane) token(orgID string) string {
	c.t.Helper()
	tok, err := c.enroll.CreateToken(context.Background(), orgID, time.Hour)
	if err != nil {
		c.t.Fatal(err)
	}
	return tok
}

// totals sums everything the control plane stored for org.
func (c *controlPlane) totals(orgID string) controlplane.Totals {
	c.t.Helper()
	now := time.Now().UTC()
	rows, err := c.store.Usage(context.Background(), controlplane.UsageQuery{OrgID: orgID, From: now.Add(-48 * time.Hour), To: now.Add(48 * time.Hour), Step: controlplane.Day})
	if err != nil {
		c.t.Fatal(err)
	}
	var t controlplane.Totals
	for _, r := range rows {
		addTotals(&t, r.Totals)
	}
	return t
}

func addTotals(t *controlplane.Totals, r controlplane.Totals) {
	t.Requests += r.Requests
	for _, p := range []struct{ to, from *wire.Tokens }{{&t.Input, &r.Input}, {&t.CachedInput, &r.CachedInput}, {&t.CacheWrite, &r.CacheWrite}, {&t.Output, &r.Output}, {&t.Reasoning, &r.Reasoning}} {
		p.to.Sum += p.from.Sum
		p.to.Unknown += p.from.Unknown
	}
	t.CostNanoUSD += r.CostNanoUSD
	t.CostUnknown += r.CostUnknown
	t.SavedNanoUSD += r.SavedNanoUSD
	t.Limited += r.Limited
	t.BudgetRefused += r.BudgetRefused
	for i, n := range r.LatencyMS {
		t.LatencyMS[i] += n
	}
}

// edgeTotals sums the edge's own metadata the way the control plane does.
func edgeTotals(recs []edge.RequestRecord) controlplane.Totals {
	var t controlplane.Totals
	add := func(tk *wire.Tokens, c edge.Count) {
		if c.Known {
			tk.Sum += c.N
		} else {
			tk.Unknown++
		}
	}
	for _, r := range recs {
		t.Requests++
		add(&t.Input, r.Usage.Input)
		add(&t.CachedInput, r.Usage.CachedInput)
		add(&t.CacheWrite, r.Usage.CacheWrite)
		add(&t.Output, r.Usage.Output)
		add(&t.Reasoning, r.Usage.Reasoning)
		if r.CostKnown {
			t.CostNanoUSD += r.CostNanoUSD
		} else {
			t.CostUnknown++
		}
		t.SavedNanoUSD += r.SavedNanoUSD
		t.LatencyMS[wire.LatencyBucket(r.Latency)]++
	}
	return t
}

// relay forwards TCP connections to target and counts them.
type relay struct {
	ln     net.Listener
	target atomic.Value // host:port
	conns  atomic.Int64
	mu     sync.Mutex
	open   []net.Conn
}

func newRelay(t *testing.T) *relay {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{ln: ln}
	t.Cleanup(func() { ln.Close(); r.cut() })
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			r.conns.Add(1)
			out, err := net.Dial("tcp", r.target.Load().(string))
			if err != nil {
				in.Close()
				continue
			}
			r.mu.Lock()
			r.open = append(r.open, in, out)
			r.mu.Unlock()
			// The copies end when the test cuts the connections.
			go func() { _, _ = io.Copy(out, in); out.Close() }()
			go func() { _, _ = io.Copy(in, out); in.Close() }()
		}
	}()
	return r
}

func (r *relay) addr() string { return r.ln.Addr().String() }

// cut closes every relayed connection.
func (r *relay) cut() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.open {
		c.Close()
	}
	r.open = nil
}

// newTelemetryHarness is newHarness with a short telemetry window and
// fast polling and retrying, so tests need not wait a minute.
func newTelemetryHarness(t *testing.T) *harness {
	t.Helper()
	fake := fakeprovider.New(fakeprovider.Options{})
	ts := httptest.NewServer(fake)
	t.Cleanup(ts.Close)
	dir := t.TempDir()
	st, err := sqlite.Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Listen, cfg.AdminListen, cfg.DataDir = "127.0.0.1:0", "127.0.0.1:0", dir
	cfg.MetadataFlush = 10 * time.Millisecond
	cfg.ChangePoll = 50 * time.Millisecond
	cfg.TelemetryWindow = 300 * time.Millisecond
	h := &harness{t: t, fake: fake, fakeURL: ts.URL, store: st, cfg: cfg, env: map[string]string{}}
	startTelemetryEdge(h)
	t.Cleanup(func() {
		h.stop()
		st.Close()
	})
	return h
}

// edgeRoots holds the NATS CA an edge trusts, per harness.
var edgeRoots sync.Map // *harness → *x509.CertPool

func startTelemetryEdge(h *harness) {
	h.t.Helper()
	log := slog.New(slog.DiscardHandler)
	srv, err := server.New(context.Background(), h.cfg, h.store, log, server.Options{Getenv: h.getenv,
		Telemetry: func(o *telemetry.Options) {
			o.Poll, o.MaxBackoff = 50*time.Millisecond, 200*time.Millisecond
			if roots, ok := edgeRoots.Load(h); ok {
				o.RootCAs = roots.(*x509.CertPool)
			}
		}})
	if err != nil {
		h.t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		h.t.Fatal(err)
	}
	h.srv, h.base = srv, "http://"+srv.Addr()
}

// enrollEdge enrolls the edge's data directory as `codex-edge telemetry
// enroll` does.
func enrollEdge(t *testing.T, h *harness, cp *controlPlane, orgID string) telemetry.Enrollment {
	t.Helper()
	d := telemetry.DirIn(h.cfg.DataDir)
	kr := telemetryKeyring(t, h)
	e, err := telemetry.Enroll(context.Background(), d, kr, cp.api.Client(), cp.api.URL, cp.token(orgID), "edge-test", "0.1.0")
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func telemetryKeyring(t *testing.T, h *harness) *keyring.Keyring {
	t.Helper()
	d := telemetry.DirIn(h.cfg.DataDir)
	if err := d.Ensure(); err != nil {
		t.Fatal(err)
	}
	ks, err := telemetry.OpenKeyStore(d.KeyStorePath())
	if err != nil {
		t.Fatal(err)
	}
	kr, err := server.OpenKeyring(context.Background(), h.cfg, ks, h.getenv, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

// setSharing switches sharing through the admin API.
func setSharing(t *testing.T, h *harness, on bool) telemetry.Status {
	t.Helper()
	resp, err := http.Post("http://"+h.srv.AdminAddr()+"/admin/v1/telemetry/sharing", "application/json", strings.NewReader(fmt.Sprintf(`{"on":%v}`, on)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st telemetry.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || resp.StatusCode != 200 {
		t.Fatalf("sharing: %s %v", resp.Status, err)
	}
	if st.Sharing != on {
		t.Fatalf("sharing = %v after setting %v", st.Sharing, on)
	}
	return st
}

// traffic sends n requests over both providers, several models, JSON and
// streams, with and without stream usage, each prompt carrying a canary;
// every third request repeats an earlier prompt.
func traffic(t *testing.T, h *harness, tenants []tenant, from, n int, canary string) {
	t.Helper()
	if err := sendTraffic(ctxT(t), h, tenants, from, n, canary, 0); err != nil {
		t.Fatal(err)
	}
}

// sendTraffic is traffic with a pause between requests, safe to run in a
// goroutine.
func sendTraffic(ctx context.Context, h *harness, tenants []tenant, from, n int, canary string, pause time.Duration) error {
	for i := from; i < from+n; i++ {
		time.Sleep(pause)
		tn := tenants[i%len(tenants)]
		prompt := fmt.Sprintf("%s-%d what is the weather", canary, i)
		if i%3 == 2 {
			prompt = fmt.Sprintf("%s-%d what is the weather", canary, i-1)
		}
		oc, ac := h.openai(tn.key), h.anthropic(tn.key)
		var err error
		switch i % 5 {
		case 0:
			_, err = oc.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "gpt-4o-mini",
				Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)}})
		case 1:
			p := openai.ChatCompletionNewParams{Model: "gpt-4o", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)}}
			p.StreamOptions.IncludeUsage = openai.Bool(true)
			s := oc.Chat.Completions.NewStreaming(ctx, p)
			for s.Next() {
			}
			err = s.Err()
		case 2:
			// A model missing from the price table: its cost is unknown.
			s := oc.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: "acme-unpriced-1",
				Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)}})
			for s.Next() {
			}
			err = s.Err()
		case 3:
			_, err = ac.Messages.New(ctx, anthropic.MessageNewParams{Model: "claude-sonnet-4-5", MaxTokens: 64,
				Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(prompt))}})
		case 4:
			s := ac.Messages.NewStreaming(ctx, anthropic.MessageNewParams{Model: "claude-haiku-4-5", MaxTokens: 64,
				Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(prompt))}})
			for s.Next() {
			}
			err = s.Err()
		}
		if err != nil {
			return fmt.Errorf("request %d: %w", i, err)
		}
	}
	return nil
}

// allRecords waits for n metadata records over the tenants.
func allRecords(t *testing.T, h *harness, tenants []tenant, n int) []edge.RequestRecord {
	t.Helper()
	var recs []edge.RequestRecord
	testutil.Eventually(t, 10*time.Second, fmt.Sprintf("%d metadata records", n), func() bool {
		recs = recs[:0]
		for _, tn := range tenants {
			r, err := h.store.Requests(context.Background(), tn.orgID, time.Time{}, 100000)
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, r...)
		}
		return len(recs) == n
	})
	return recs
}

// flushTelemetry closes the edge's telemetry window once every request
// being handled is done: a JSON answer reaches its client before its
// request is recorded.
func flushTelemetry(t *testing.T, ctx context.Context, srv *server.Server) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, "the requests answered to be recorded", func() bool { return srv.Busy() == 0 })
	srv.Telemetry().Flush(ctx)
}

// waitTotals flushes the edge's window and waits until the control
// plane's totals equal the edge's own metadata.
func waitTotals(t *testing.T, h *harness, cp *controlPlane, orgID string, recs []edge.RequestRecord) {
	t.Helper()
	want := edgeTotals(recs)
	flushTelemetry(t, ctxT(t), h.srv)
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := cp.totals(orgID)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("control plane totals\n got %+v\nwant %+v (edge metadata)\nedge status %+v\ningest %+v", got, want, h.srv.Telemetry().Status(), cp.ingester.Stats())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestTelemetryTotalsEqualEdgeMetadata(t *testing.T) {
	cp := newControlPlane(t)
	org := cp.org()
	h := newTelemetryHarness(t)
	tenants := []tenant{h.addOrg("alpha"), h.addOrg("beta")}

	// Everything a network observer could see on the control plane's side.
	var seen bytes.Buffer
	var seenMu sync.Mutex
	for _, nc := range []*nats.Conn{cp.svc, cp.sys} {
		sub, err := nc.Subscribe(">", func(m *nats.Msg) {
			seenMu.Lock()
			seen.Write(m.Data)
			for k, v := range m.Header {
				seen.WriteString(k + strings.Join(v, ","))
			}
			seenMu.Unlock()
		})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
	}

	enr := enrollEdge(t, h, cp, org)
	setSharing(t, h, true)
	// The switch is in every org's audit log, with who made it.
	for _, tn := range tenants {
		evs, err := h.store.AuditEvents(context.Background(), tn.orgID, edge.AuditQuery{Limit: 10})
		if err != nil || len(evs) != 1 || !strings.Contains(string(evs[0].Meta), `"action":"telemetry.sharing","actor":"127.0.0.1","via":"admin-api","details":{"on":"true"}`) {
			t.Fatalf("org %s: audit events %d %v: %+v", tn.orgID, len(evs), err, evs)
		}
	}
	const canary = "CANARY7f3a9c"
	const n = 40
	traffic(t, h, tenants, 0, n, canary)
	recs := allRecords(t, h, tenants, n)
	waitTotals(t, h, cp, org, recs)

	want := edgeTotals(recs)
	if want.CostUnknown == 0 || want.CacheWrite.Unknown == 0 || want.CostNanoUSD == 0 || want.Input.Sum == 0 {
		t.Fatalf("traffic too uniform to test the sums: %+v", want)
	}
	st := h.srv.Telemetry().Status()
	if st.LastSentSeq == 0 || !st.Connected || st.EdgeID != enr.EdgeID || st.LastError != "" {
		t.Fatalf("status after delivery: %+v", st)
	}
	// Off: windows stop, and with them the ledger, so it can be compared.
	setSharing(t, h, false)
	testutil.Eventually(t, 10*time.Second, "the connection to close", func() bool { return !h.srv.Telemetry().Status().Connected })
	st = h.srv.Telemetry().Status()

	// The ledger lists exactly the batches the control plane holds.
	// The enrollment exchange comes first, then the batches.
	ledger := getLedger(t, h)
	if len(ledger) < 2 || ledger[0].Kind != telemetry.KindEnrollment || strings.Contains(string(ledger[0].Batch), enr.UserJWT) {
		t.Fatalf("ledger without the enrollment exchange first: %+v", ledger)
	}
	ledger = ledger[1:]
	if ledger[len(ledger)-1].Seq != st.LastSentSeq {
		t.Fatalf("ledger has %d entries, last sent seq %d", len(ledger), st.LastSentSeq)
	}
	var fromLedger controlplane.Totals
	workspaces := map[string]bool{}
	for i, e := range ledger {
		b, err := wire.Decode(e.Batch)
		if err != nil {
			t.Fatalf("ledger entry %d: %v", i, err)
		}
		if e.MsgID != wire.MsgID(enr.EdgeID, e.Seq) || e.Subject != wire.Subject(org, enr.EdgeID) || b.Seq != e.Seq || (i > 0 && e.Seq <= ledger[i-1].Seq) {
			t.Fatalf("ledger entry %d: %+v", i, e)
		}
		for _, r := range b.Rows {
			workspaces[r.Workspace] = true
			if strings.Contains(r.Workspace, "alpha") || strings.Contains(r.KeyRef, "key_") {
				t.Fatalf("names leaked without opt-in: %+v", r)
			}
			addTotals(&fromLedger, controlplane.Totals{Requests: r.Requests, Input: r.Input, CachedInput: r.CachedInput, CacheWrite: r.CacheWrite,
				Output: r.Output, Reasoning: r.Reasoning, CostNanoUSD: r.CostNanoUSD, CostUnknown: r.CostUnknown, SavedNanoUSD: r.SavedNanoUSD, LatencyMS: r.LatencyMS})
		}
	}
	if fromLedger != want || len(workspaces) != 2 {
		t.Fatalf("ledger totals %+v over %d workspaces, want %+v over 2", fromLedger, len(workspaces), want)
	}

	// Canaries: not on NATS, not in the ledger, not in the control
	// plane's files, not in the edge's telemetry files.
	time.Sleep(100 * time.Millisecond)
	seenMu.Lock()
	onWire := seen.Len()
	leaked := bytes.Contains(seen.Bytes(), []byte(canary))
	seenMu.Unlock()
	if onWire == 0 {
		t.Fatal("the observer saw nothing: the canary check would be vacuous")
	}
	if leaked {
		t.Fatal("a canary crossed NATS")
	}
	for _, root := range []string{cp.dir, string(telemetry.DirIn(h.cfg.DataDir))} {
		scanFiles(t, root, canary)
	}
}

func getLedger(t *testing.T, h *harness) []telemetry.LedgerEntry {
	t.Helper()
	return ledgerAt(t, h.srv.AdminAddr())
}

// scanFiles fails if any file under root contains needle.
func scanFiles(t *testing.T, root, needle string) {
	t.Helper()
	files := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		if bytes.Contains(b, []byte(needle)) {
			t.Errorf("%s contains a canary", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 {
		t.Fatalf("no files under %s", root)
	}
}

func TestTelemetryOutageAndRestartsLoseNothing(t *testing.T) {
	cp := newControlPlane(t)
	org := cp.org()
	h := newTelemetryHarness(t)
	tenants := []tenant{h.addOrg("alpha"), h.addOrg("beta")}
	enr := enrollEdge(t, h, cp, org)
	setSharing(t, h, true)
	ctx := ctxT(t)

	traffic(t, h, tenants, 0, 10, "c")
	// The control plane goes away, NATS with it, while traffic flows.
	errc := make(chan error, 1)
	go func() { errc <- sendTraffic(ctx, h, tenants, 10, 20, "c", 20*time.Millisecond) }()
	time.Sleep(150 * time.Millisecond)
	cp.relay.cut()
	cp.stop()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	allRecords(t, h, tenants, 30)
	h.srv.Telemetry().Flush(ctx)
	testutil.Eventually(t, 10*time.Second, "batches spooled", func() bool { return h.srv.Telemetry().Status().Spool.Batches > 0 })

	// The edge restarts too while it cannot deliver: the spool and the
	// sequence numbers survive.
	h.stop()
	startTelemetryEdge(h)
	traffic(t, h, tenants, 30, 10, "c")
	allRecords(t, h, tenants, 40)
	h.srv.Telemetry().Flush(ctx)
	time.Sleep(500 * time.Millisecond) // a few failed attempts

	// The control plane comes back while traffic flows.
	go func() { errc <- sendTraffic(ctx, h, tenants, 40, 15, "c", 20*time.Millisecond) }()
	time.Sleep(100 * time.Millisecond)
	cp.start()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	recs := allRecords(t, h, tenants, 55)
	waitTotals(t, h, cp, org, recs)

	// And once more: the control plane restarts right after delivering.
	cp.relay.cut()
	cp.stop()
	cp.start()
	traffic(t, h, tenants, 55, 5, "c")
	recs = allRecords(t, h, tenants, 60)
	waitTotals(t, h, cp, org, recs)
	// A window may close at any moment; the spool empties, nothing dropped.
	testutil.Eventually(t, 10*time.Second, "an empty spool", func() bool { return h.srv.Telemetry().Status().Spool.Batches == 0 })
	if st := h.srv.Telemetry().Status(); st.Spool.Dropped != 0 {
		t.Fatalf("spool after recovery: %+v", st.Spool)
	}

	// Batches sent again (a lost acknowledgement) count once: the store
	// drops them, with their Nats-Msg-Id (past JetStream's short duplicate
	// window) or without.
	want := cp.totals(org)
	before := cp.ingester.Stats().Duplicates
	js, err := jetstream.New(edgeConn(t, h, enr, nil))
	if err != nil {
		t.Fatal(err)
	}
	resent := 0
	for _, e := range getLedger(t, h) {
		if b, _ := wire.Decode(e.Batch); b == nil || len(b.Rows) == 0 {
			continue
		}
		if _, err := js.Publish(ctx, e.Subject, e.Batch, jetstream.WithMsgID(e.MsgID)); err != nil {
			t.Fatal(err)
		}
		if _, err := js.Publish(ctx, e.Subject, e.Batch); err != nil {
			t.Fatal(err)
		}
		resent++
	}
	if resent == 0 {
		t.Fatal("no batch with rows in the ledger")
	}
	testutil.Eventually(t, 10*time.Second, "the re-sent batches to be seen as duplicates", func() bool { return cp.ingester.Stats().Duplicates-before >= int64(resent) })
	if got := cp.totals(org); got != want {
		t.Fatalf("re-sent batches changed the totals:\n got %+v\nwant %+v", got, want)
	}
}

// edgeConn connects to NATS with the edge's own credentials, unsealed
// from its data directory.
func edgeConn(t *testing.T, h *harness, enr telemetry.Enrollment, errs func(error)) *nats.Conn {
	t.Helper()
	seed, err := telemetryKeyring(t, h).Open(context.Background(), telemetry.KeyOrg, keyring.PurposeTelemetry, "nats-seed", enr.SealedSeed)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := nkeys.FromSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	opts := []nats.Option{natsbus.JWTAndKey(enr.UserJWT, kp), nats.CustomInboxPrefix(enr.InboxPrefix), nats.NoReconnect()}
	if errs != nil {
		opts = append(opts, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs(err) }))
	}
	nc, err := nats.Connect(enr.NATSURL, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func TestTelemetryOffOpensNoConnection(t *testing.T) {
	cp := newControlPlane(t)
	org := cp.org()
	h := newTelemetryHarness(t)
	tenants := []tenant{h.addOrg("alpha")}
	enrollEdge(t, h, cp, org)
	enrollConns := cp.apiConns.Load()

	// Enrolled, never switched on: off by default.
	resp, err := http.Get("http://" + h.srv.AdminAddr() + "/admin/v1/telemetry")
	if err != nil {
		t.Fatal(err)
	}
	var st telemetry.Status
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if st.Sharing || !st.Enrolled || st.Connected || !st.Running {
		t.Fatalf("status after enrolling: %+v", st)
	}
	traffic(t, h, tenants, 0, 10, "c")
	allRecords(t, h, tenants, 10)
	h.srv.Telemetry().Flush(ctxT(t))
	time.Sleep(time.Second)
	if n := cp.relay.conns.Load(); n != 0 {
		t.Fatalf("%d connections to NATS while sharing was never on", n)
	}

	// On, then off again by the CLI's file (another process): the running
	// edge closes its connection and opens none during further traffic.
	setSharing(t, h, true)
	testutil.Eventually(t, 10*time.Second, "a connection once on", func() bool { return cp.relay.conns.Load() > 0 })
	if err := telemetry.DirIn(h.cfg.DataDir).SetSharing(false, "cli"); err != nil {
		t.Fatal(err)
	}
	// Sharing off in its status, not only disconnected: a failed publish
	// also disconnects, and would reconnect while sharing is on.
	testutil.Eventually(t, 10*time.Second, "the edge to notice the switch", func() bool {
		st := h.srv.Telemetry().Status()
		return !st.Sharing && !st.Connected
	})
	cp.relay.cut()
	before := cp.relay.conns.Load()
	traffic(t, h, tenants, 10, 10, "c")
	allRecords(t, h, tenants, 20)
	h.srv.Telemetry().Flush(ctxT(t))
	time.Sleep(time.Second)
	if n := cp.relay.conns.Load(); n != before {
		t.Fatalf("%d new connections to NATS while sharing was off", n-before)
	}
	if n := cp.apiConns.Load(); n != enrollConns {
		t.Fatalf("%d connections to the control plane API after enrolling", n-enrollConns)
	}
	// Every request was made while sharing was off: none was counted.
	if got := cp.totals(org).Requests; got != 0 {
		t.Fatalf("control plane holds %d requests made while sharing was off", got)
	}
}

func TestTelemetryCredentialsScopedAndRevocable(t *testing.T) {
	cp := newControlPlane(t)
	orgA, orgB := cp.org(), cp.org()
	h := newTelemetryHarness(t)
	enrA := enrollEdge(t, h, cp, orgA)
	// A second edge of the same org, and one of another org.
	h2 := newTelemetryHarness(t)
	enrA2 := enrollEdge(t, h2, cp, orgA)
	h3 := newTelemetryHarness(t)
	enrB := enrollEdge(t, h3, cp, orgB)

	var mu sync.Mutex
	var asyncErrs []error
	nc := edgeConn(t, h, enrA, func(err error) { mu.Lock(); asyncErrs = append(asyncErrs, err); mu.Unlock() })
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	batch := func(orgID, edgeID string) []byte {
		now := time.Now().UTC()
		b, err := wire.Encode(&wire.UsageBatch{SchemaVersion: wire.SchemaVersion, WindowStart: now.Add(-time.Minute), WindowEnd: now,
			OrgID: orgID, EdgeID: edgeID, Seq: 1, Rows: []wire.UsageRow{}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ctx := ctxT(t)
	// Its own subject works.
	if _, err := js.Publish(ctx, enrA.Subject, batch(orgA, enrA.EdgeID), jetstream.WithMsgID(wire.MsgID(enrA.EdgeID, 1))); err != nil {
		t.Fatalf("own subject: %v", err)
	}
	for _, other := range []struct{ name, subject, org, edge string }{
		{"another edge of the org", enrA2.Subject, orgA, enrA2.EdgeID},
		{"another org's edge", enrB.Subject, orgB, enrB.EdgeID},
		{"another org, own edge id", wire.Subject(orgB, enrA.EdgeID), orgB, enrA.EdgeID},
	} {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := js.Publish(pctx, other.subject, batch(other.org, other.edge), jetstream.WithMsgID(wire.MsgID(other.edge, 7)))
		cancel()
		if err == nil {
			t.Errorf("%s: publish acknowledged", other.name)
		}
	}
	mu.Lock()
	violations := 0
	for _, e := range asyncErrs {
		if strings.Contains(strings.ToLower(e.Error()), "permissions violation") {
			violations++
		}
	}
	mu.Unlock()
	if violations < 3 {
		t.Errorf("%d permission violations reported, want 3: %v", violations, asyncErrs)
	}

	// Revoked: NATS refuses the edge's credentials, and the edge's own
	// sender reports the refusal instead of delivering.
	if err := cp.enroll.Revoke(ctx, orgA, enrA.EdgeID); err != nil {
		t.Fatal(err)
	}
	seed, err := telemetryKeyring(t, h).Open(ctx, telemetry.KeyOrg, keyring.PurposeTelemetry, "nats-seed", enrA.SealedSeed)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := nkeys.FromSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nats.Connect(enrA.NATSURL, natsbus.JWTAndKey(enrA.UserJWT, kp), nats.NoReconnect()); err == nil {
		t.Fatal("a revoked edge connected")
	}
	tn := h.addOrg("alpha")
	setSharing(t, h, true)
	traffic(t, h, []tenant{tn}, 0, 3, "c")
	allRecords(t, h, []tenant{tn}, 3)
	h.srv.Telemetry().Flush(ctx)
	testutil.Eventually(t, 10*time.Second, "the refusal to show in status", func() bool {
		st := h.srv.Telemetry().Status()
		return st.LastError != "" && st.Spool.Batches > 0
	})
	if got := cp.totals(orgA).Requests; got != 0 {
		t.Fatalf("a revoked edge's usage was stored: %d requests", got)
	}
}

// selfSigned returns a TLS 1.3 server configuration for 127.0.0.1 and a
// pool that trusts it.
func selfSigned(t *testing.T) (*tls.Config, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "codex test nats"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, roots
}

func TestTelemetryOverTLS(t *testing.T) {
	cp := newControlPlaneTLS(t, true)
	org := cp.org()
	h := newTelemetryHarness(t)
	tenants := []tenant{h.addOrg("alpha")}
	enr := enrollEdge(t, h, cp, org)
	if !strings.HasPrefix(enr.NATSURL, "tls://") {
		t.Fatalf("NATS URL %s", enr.NATSURL)
	}

	// Without the CA the edge refuses the server; nothing is delivered.
	setSharing(t, h, true)
	traffic(t, h, tenants, 0, 5, "c")
	allRecords(t, h, tenants, 5)
	h.srv.Telemetry().Flush(ctxT(t))
	testutil.Eventually(t, 10*time.Second, "a certificate error", func() bool {
		return strings.Contains(h.srv.Telemetry().Status().LastError, "certificate")
	})

	// Trusting it (a restart with the CA configured), everything arrives.
	edgeRoots.Store(h, cp.roots)
	t.Cleanup(func() { edgeRoots.Delete(h) })
	h.stop()
	startTelemetryEdge(h)
	traffic(t, h, tenants, 5, 5, "c")
	recs := allRecords(t, h, tenants, 10)
	waitTotals(t, h, cp, org, recs)
}

func TestTelemetryAdminSharingNeedsJSON(t *testing.T) {
	h := newTelemetryHarness(t)
	cp := newControlPlane(t)
	url := "http://" + h.srv.AdminAddr() + "/admin/v1/telemetry/sharing"
	for _, c := range []struct {
		ctype, body string
		want        int
	}{
		{"text/plain", `{"on":true}`, http.StatusUnsupportedMediaType}, // what a cross-site form can send
		{"application/json", `{"on":true}`, http.StatusConflict},       // not enrolled yet
		{"application/json", `{"on":"yes"}`, http.StatusBadRequest},
		{"application/json", `{}`, http.StatusBadRequest},
	} {
		resp, err := http.Post(url, c.ctype, strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s %s: %d, want %d", c.ctype, c.body, resp.StatusCode, c.want)
		}
	}
	if st, _ := telemetry.ReadStatus(telemetry.DirIn(h.cfg.DataDir), 1, 1); st.Sharing {
		t.Fatal("sharing switched on by a refused request")
	}
	enrollEdge(t, h, cp, cp.org())
	setSharing(t, h, true)
	if st, _ := telemetry.ReadStatus(telemetry.DirIn(h.cfg.DataDir), 1, 1); !st.Sharing {
		t.Fatal("the admin API's switch was not persisted")
	}
}

// TestTelemetryForeignDuplicateAckKeepsBatch: another edge of the org
// publishes junk under this edge's Nats-Msg-Ids, so JetStream acknowledges
// this edge's batch as a duplicate and drops it. The edge never had that
// batch acknowledged: it counts and reports the acknowledgement, keeps the
// batch in its spool, and delivers it once the duplicate window has passed.
func TestTelemetryForeignDuplicateAckKeepsBatch(t *testing.T) {
	// A long window, so the poisoned ids stay poisoned until the restart.
	cp := newControlPlaneWith(t, false, ingest.Limits{Duplicates: time.Hour})
	org := cp.org()
	h := newTelemetryHarness(t)
	tenants := []tenant{h.addOrg("alpha")}
	enr := enrollEdge(t, h, cp, org)
	ctx := ctxT(t)

	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	sibling, err := cp.enroll.Enroll(ctx, wire.EnrollRequest{Token: cp.token(org), PublicKey: pub, Name: "sibling", Version: "0.1.0"})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(cp.nats.ClientURL(), natsbus.JWTAndKey(sibling.UserJWT, kp), nats.CustomInboxPrefix(sibling.InboxPrefix), nats.NoReconnect())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sjs, _ := jetstream.New(nc)
	const poisoned = 10
	for seq := int64(1); seq <= poisoned; seq++ {
		if ack, err := sjs.Publish(ctx, sibling.Subject, []byte("{}"), jetstream.WithMsgID(wire.MsgID(enr.EdgeID, seq))); err != nil || ack.Duplicate {
			t.Fatalf("junk %d: %+v %v", seq, ack, err)
		}
	}

	setSharing(t, h, true)
	traffic(t, h, tenants, 0, 5, "c")
	recs := allRecords(t, h, tenants, 5)
	h.srv.Telemetry().Flush(ctx)
	dups := regexp.MustCompile(`(?m)^codex_edge_telemetry_unexpected_duplicates_total ([0-9]+)$`)
	testutil.Eventually(t, 10*time.Second, "a duplicate acknowledgement counted", func() bool {
		m := dups.FindStringSubmatch(metrics(t, h))
		return m != nil && m[1] != "0"
	})
	st := h.srv.Telemetry().Status()
	if st.LastSentSeq != 0 || st.Spool.Batches == 0 || !strings.Contains(st.LastError, "duplicate") {
		t.Fatalf("after a foreign duplicate acknowledgement: %+v", st)
	}
	if st.LastSeq > poisoned {
		t.Fatalf("the edge made %d batches; only %d ids were poisoned", st.LastSeq, poisoned)
	}
	if got := cp.totals(org).Requests; got != 0 {
		t.Fatalf("the control plane holds %d requests", got)
	}

	// The junk is rejected by the ingest; a restart with the default
	// window clears the poisoned ids, and the kept batches go through.
	testutil.Eventually(t, 10*time.Second, "the junk rejected", func() bool { return cp.ingester.Stats().Rejected["malformed"] == poisoned })
	cp.relay.cut()
	cp.stop()
	cp.limits = ingest.Limits{}
	cp.start()
	waitTotals(t, h, cp, org, recs)
	testutil.Eventually(t, 10*time.Second, "an empty spool", func() bool { return h.srv.Telemetry().Status().Spool.Batches == 0 })
}

// With CODEX_TELEMETRY_DIMENSIONS and CODEX_TELEMETRY_MIN_COUNT the control
// plane receives no model or key reference, small rows folded into
// "other", the same totals, and the edge's settings.
func TestTelemetryMinimizedEndToEnd(t *testing.T) {
	cp := newControlPlane(t)
	org := cp.org()
	h := newTelemetryHarness(t)
	h.stop()
	// Every row of a window has fewer than 1000 requests: all are folded,
	// whatever the windows the traffic falls in.
	h.cfg.TelemetryDimensions, h.cfg.TelemetryMinCount = "workspace,provider", 1000
	startTelemetryEdge(h)
	tenants := []tenant{h.addOrg("alpha"), h.addOrg("beta")}
	enr := enrollEdge(t, h, cp, org)
	setSharing(t, h, true)
	const n = 40
	traffic(t, h, tenants, 0, n, "minimized")
	waitTotals(t, h, cp, org, allRecords(t, h, tenants, n))

	now := time.Now().UTC()
	rows, err := cp.store.Usage(context.Background(), controlplane.UsageQuery{OrgID: org, From: now.Add(-48 * time.Hour), To: now.Add(48 * time.Hour),
		Step: controlplane.Day, GroupBy: []controlplane.Dimension{controlplane.DimWorkspace, controlplane.DimModel, controlplane.DimKeyRef}})
	if err != nil {
		t.Fatal(err)
	}
	folded := false
	for _, r := range rows {
		if r.Key[controlplane.DimModel] != wire.Other || r.Key[controlplane.DimKeyRef] != wire.Other {
			t.Fatalf("a withheld dimension reached the control plane: %+v", r.Key)
		}
		if r.Key[controlplane.DimWorkspace] != wire.Other {
			t.Fatalf("a row not folded: %+v", r.Key)
		}
		folded = true
	}
	if len(rows) == 0 || !folded {
		t.Fatalf("rows %+v: want some folded into %q", rows, wire.Other)
	}
	e, err := cp.store.Edge(context.Background(), org, enr.EdgeID)
	if err != nil {
		t.Fatal(err)
	}
	want := wire.Settings{Dimensions: []string{wire.DimWorkspace, wire.DimProvider}, MinCount: 1000, HeartbeatS: int64(telemetry.DefaultHeartbeat / time.Second)}
	if e.Settings == nil || !slices.Equal(e.Settings.Dimensions, want.Dimensions) || e.Settings.MinCount != want.MinCount || e.Settings.HeartbeatS != want.HeartbeatS {
		t.Fatalf("the control plane holds settings %+v, want %+v", e.Settings, want)
	}
}

// TestTelemetryNATSURLList: a control plane on a NATS cluster gives edges
// every node's URL, comma-separated; the edge reaches the cluster through
// a node that is up (here the only one) and, all of them on the loopback,
// in plain NATS as with one URL.
func TestTelemetryNATSURLList(t *testing.T) {
	cp := newControlPlane(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := ln.Addr().String()
	ln.Close()
	cp.enroll.NATSURL = "nats://" + down + ",nats://" + cp.relay.addr()
	org := cp.org()
	h := newTelemetryHarness(t)
	tenants := []tenant{h.addOrg("alpha")}
	if enr := enrollEdge(t, h, cp, org); enr.NATSURL != cp.enroll.NATSURL {
		t.Fatalf("NATS URL %s, want %s", enr.NATSURL, cp.enroll.NATSURL)
	}
	setSharing(t, h, true)
	traffic(t, h, tenants, 0, 10, "c")
	recs := allRecords(t, h, tenants, 10)
	waitTotals(t, h, cp, org, recs)
}
