package telemetry_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/persiv/codex/controlplane"
	"github.com/persiv/codex/controlplane/enroll"
	"github.com/persiv/codex/controlplane/httpapi"
	"github.com/persiv/codex/controlplane/ingest"
	"github.com/persiv/codex/controlplane/natsauth"
	"github.com/persiv/codex/controlplane/natsbus"
	cpsqlite "github.com/persiv/codex/controlplane/store/sqlite"
	cptestenv "github.com/persiv/codex/controlplane/testenv"
	"github.com/persiv/codex/edge/telemetry"
)

// testCA signs server certificates for 127.0.0.1 and localhost, each
// with a key of its own.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "codex test CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

var serial atomic.Int64

// issue returns a server certificate with a fresh key, signed by the CA:
// every one is trusted by the CA's pool.
func (ca *testCA) issue(t testing.TB) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(100 + serial.Add(1)), Subject: pkix.Name{CommonName: "controlplane"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

func pinsOf(t testing.TB, certs ...tls.Certificate) telemetry.Pins {
	t.Helper()
	var s []string
	for _, c := range certs {
		s = append(s, telemetry.PinOf(c.Leaf))
	}
	p, err := telemetry.ParsePins(strings.Join(s, ","))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPinsVerify: the leaf's key or a key of the verified chain must be
// pinned; a pinned certificate merely sent along (anyone can copy the
// real control plane's certificate) does not count.
func TestPinsVerify(t *testing.T) {
	ca := newTestCA(t)
	a, c := ca.issue(t), ca.issue(t)
	pinned := pinsOf(t, a).TLSConfig(nil)
	caPinned, _ := telemetry.ParsePins(telemetry.PinOf(ca.cert))
	for _, tc := range []struct {
		name string
		conf *tls.Config
		cs   tls.ConnectionState
		ok   bool
	}{
		{"pinned leaf", pinned, tls.ConnectionState{PeerCertificates: []*x509.Certificate{a.Leaf}}, true},
		{"another leaf", pinned, tls.ConnectionState{PeerCertificates: []*x509.Certificate{c.Leaf}}, false},
		{"pinned certificate sent along", pinned, tls.ConnectionState{PeerCertificates: []*x509.Certificate{c.Leaf, a.Leaf}}, false},
		{"pinned CA in the verified chain", caPinned.TLSConfig(nil), tls.ConnectionState{PeerCertificates: []*x509.Certificate{c.Leaf},
			VerifiedChains: [][]*x509.Certificate{{c.Leaf, ca.cert}}}, true},
		{"no certificate", pinned, tls.ConnectionState{}, false},
	} {
		err := tc.conf.VerifyConnection(tc.cs)
		if tc.ok != (err == nil) || (!tc.ok && !errors.Is(err, telemetry.ErrPinMismatch)) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	if (telemetry.Pins{}).TLSConfig(nil) != nil {
		t.Error("no pins changed the TLS configuration")
	}
	if resp, err := (telemetry.Pins{}).Client(http.DefaultClient).Get("http://127.0.0.1:1"); err == nil {
		resp.Body.Close()
		t.Error("unreachable")
	}
	if resp, err := pinsOf(t, a).Client(http.DefaultClient).Get("http://127.0.0.1:1/"); err == nil || !strings.Contains(err.Error(), "https") {
		if resp != nil {
			resp.Body.Close()
		}
		t.Errorf("pinned client over plain http: %v", err)
	}
}

// pinnedControlPlane is a control plane (embedded NATS with TLS,
// enrollment over HTTPS, the ingest consumer) whose certificate can be
// swapped while it runs: both servers take it from cert at each
// handshake.
type pinnedControlPlane struct {
	cert   atomic.Pointer[tls.Certificate]
	store  *cpsqlite.Store
	enroll *enroll.Service
	ing    *ingest.Ingester
	url    string // https://localhost:port
}

func (cp *pinnedControlPlane) use(c tls.Certificate) { cp.cert.Store(&c) }

func newPinnedControlPlane(t *testing.T, ca *testCA, first tls.Certificate) *pinnedControlPlane {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	dir := t.TempDir()
	cp := &pinnedControlPlane{}
	cp.use(first)
	conf := &tls.Config{MinVersion: tls.VersionTLS13, GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cp.cert.Load(), nil }}
	seal, err := cptestenv.Sealer(dir)
	if err != nil {
		t.Fatal(err)
	}
	auth, err := natsauth.Open(ctx, filepath.Join(dir, "nats-keys"), natsauth.Options{Sealer: seal})
	if err != nil {
		t.Fatal(err)
	}
	emb, err := natsbus.StartEmbedded(auth, natsbus.EmbeddedConfig{Dir: filepath.Join(dir, "nats"), Listen: "127.0.0.1:-1", TLS: conf})
	if err != nil {
		t.Fatal(err)
	}
	conn := func(creds func() ([]byte, error)) *nats.Conn {
		b, err := creds()
		if err != nil {
			t.Fatal(err)
		}
		opt, err := natsbus.Creds(b)
		if err != nil {
			t.Fatal(err)
		}
		nc, err := nats.Connect(emb.ClientURL(), opt, nats.CustomInboxPrefix("_CODEX_CP"), nats.Secure(&tls.Config{RootCAs: ca.pool, MinVersion: tls.VersionTLS13}))
		if err != nil {
			t.Fatal(err)
		}
		return nc
	}
	sys, svc := conn(auth.SystemCreds), conn(auth.ServiceCreds)
	accounts := &natsbus.Accounts{Auth: auth, Sys: sys}
	if err := accounts.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if cp.store, err = cpsqlite.Open(ctx, filepath.Join(dir, "cp.db")); err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(svc)
	if err != nil {
		t.Fatal(err)
	}
	cp.ing = &ingest.Ingester{Store: cp.store, JS: js}
	if err := cp.ing.Setup(ctx, auth.Orgs()); err != nil {
		t.Fatal(err)
	}
	cp.enroll = &enroll.Service{Store: cp.store, Accounts: accounts, Streams: cp.ing, NATSURL: emb.ClientURL()}
	done := make(chan struct{})
	go func() { defer close(done); _ = cp.ing.Run(ctx) }() // ends with ctx
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: (&httpapi.API{Enroll: cp.enroll}).Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(tls.NewListener(ln, conf)) }() // ends with Close
	cp.url = "https://localhost:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	t.Cleanup(func() {
		srv.Close()
		cancel()
		<-done
		svc.Close()
		sys.Close()
		emb.Shutdown()
		cp.store.Close()
	})
	return cp
}

func (cp *pinnedControlPlane) token(t *testing.T) string {
	t.Helper()
	o := controlplane.Org{ID: controlplane.NewID("org"), Name: "Acme", CreatedAt: time.Now().UTC()}
	if err := cp.store.CreateOrg(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	tok, err := cp.enroll.CreateToken(context.Background(), o.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// syncLog is a log buffer safe for the service's goroutines.
type syncLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *syncLog) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *syncLog) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPinnedControlPlane runs an enrolled edge against a control plane
// over real TLS (HTTPS enrollment, the embedded NATS server with TLS),
// every certificate signed by a CA the edge trusts, with
// CODEX_CONTROLPLANE_PINS holding the current key's pin and a backup's:
// with the current key the edge enrolls and delivers; when the control
// plane presents another key the edge refuses it (enrollment and NATS),
// logs and counts the refusal, and keeps its batches; once the control
// plane moves to the backup key the edge delivers them with no change on
// its side. Without pins the other key would have been accepted.
func TestPinnedControlPlane(t *testing.T) {
	ca := newTestCA(t)
	current, backup, other := ca.issue(t), ca.issue(t), ca.issue(t)
	pins := pinsOf(t, current, backup)
	cp := newPinnedControlPlane(t, ca, current)
	trusting := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool, MinVersion: tls.VersionTLS13}}}
	ctx := context.Background()

	enrollInto := func(pins telemetry.Pins) (telemetry.Dir, error) {
		dir := t.TempDir()
		ks, err := telemetry.OpenKeyStore(filepath.Join(dir, "keys.json"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = telemetry.Enroll(ctx, telemetry.Dir(dir), newKeyring(t, ks, dir), pins.Client(trusting), cp.url, cp.token(t), "edge-pinned", "0.1.0")
		return telemetry.Dir(dir), err
	}
	d, err := enrollInto(pins)
	if err != nil {
		t.Fatalf("enrollment with the current key pinned: %v", err)
	}
	var logs syncLog
	ks, err := telemetry.OpenKeyStore(filepath.Join(string(d), "keys.json"))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := telemetry.Open(telemetry.Options{Dir: d, Keyring: newKeyring(t, ks, string(d)), Window: time.Hour, Poll: 20 * time.Millisecond,
		MaxBackoff: 100 * time.Millisecond, RootCAs: ca.pool, Pins: pins, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.SetSharing(ctx, true, "test"); err != nil {
		t.Fatal(err)
	}
	svc.Start(ctx)
	defer svc.Close()
	send := func() {
		if !svc.Record(rec("o1", "k1", "gpt-4o", 200)) {
			t.Fatal("record refused")
		}
		svc.Flush(ctx)
	}
	stored := func() int64 { return cp.ing.Stats().Stored }
	send()
	waitFor(t, "the first batch, over the current key", func() bool { return stored() == 1 })

	// Another key, signed by the same trusted CA: refused.
	cp.use(other)
	mismatches := telemetry.PinMismatches()
	svc.Close() // drops the connection made with the current key
	svc, err = telemetry.Open(telemetry.Options{Dir: d, Keyring: newKeyring(t, ks, string(d)), Window: time.Hour, Poll: 20 * time.Millisecond,
		MaxBackoff: 100 * time.Millisecond, RootCAs: ca.pool, Pins: pins, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	svc.Start(ctx)
	defer svc.Close()
	send()
	waitFor(t, "refusals of the other key", func() bool { return telemetry.PinMismatches() >= mismatches+2 })
	st := svc.Status()
	if st.Connected || st.Spool.Batches < 1 || !strings.Contains(st.LastError, "pin") {
		t.Fatalf("status against another key: %+v", st)
	}
	kept := int64(st.Spool.Batches) // the batch sent, and the window the first service closed
	if stored() != 1 {
		t.Fatalf("the control plane stored %d batches through a refused key", stored())
	}
	if !strings.Contains(logs.String(), "not pinned") {
		t.Fatalf("the refusal was not logged: %s", logs.String())
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(svc.Collectors()...)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var counted float64
	for _, mf := range mfs {
		if mf.GetName() == "codex_edge_telemetry_pin_mismatches_total" {
			counted = mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	if counted < float64(mismatches+2) {
		t.Fatalf("codex_edge_telemetry_pin_mismatches_total = %v", counted)
	}
	if _, err := enrollInto(pins); !errors.Is(err, telemetry.ErrPinMismatch) {
		t.Fatalf("enrollment against the other key: %v, want ErrPinMismatch", err)
	}
	// Without pins the CA alone would have let the other key through.
	if _, err := enrollInto(nil); err != nil {
		t.Fatalf("enrollment without pins against the other key: %v", err)
	}

	// The control plane rotates to the backup key: the same edge, same
	// settings, delivers what it kept.
	cp.use(backup)
	// At least what was kept when the status was read: a window the
	// first service closed may reach the spool after that.
	waitFor(t, "the kept batches, over the backup key", func() bool {
		return svc.Status().Spool.Batches == 0 && stored() >= 1+kept
	})
	if _, err := enrollInto(pins); err != nil {
		t.Fatalf("enrollment with the backup key: %v", err)
	}
}

// TestNATSClusterURLList: the control plane may hand out a NATS cluster's
// nodes as a comma-separated list. Over TLS each node's certificate is
// checked against the host dialled: here the first node is down, the
// second answers as localhost, and the edge delivers through it.
func TestNATSClusterURLList(t *testing.T) {
	ca := newTestCA(t)
	cp := newPinnedControlPlane(t, ca, ca.issue(t))
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "tls://" + dead.Addr().String()
	dead.Close() // nothing listens there any more
	u, err := url.Parse(cp.enroll.NATSURL)
	if err != nil {
		t.Fatal(err)
	}
	port := u.Port()
	cp.enroll.NATSURL = deadURL + ",tls://localhost:" + port
	trusting := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool, MinVersion: tls.VersionTLS13}}}
	ctx := context.Background()
	dir := t.TempDir()
	ks, err := telemetry.OpenKeyStore(filepath.Join(dir, "keys.json"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := telemetry.Enroll(ctx, telemetry.Dir(dir), newKeyring(t, ks, dir), trusting, cp.url, cp.token(t), "edge-list", "0.1.0"); err != nil {
		t.Fatal(err)
	}
	svc, err := telemetry.Open(telemetry.Options{Dir: telemetry.Dir(dir), Keyring: newKeyring(t, ks, dir), Window: time.Hour, Poll: 20 * time.Millisecond,
		MaxBackoff: 100 * time.Millisecond, RootCAs: ca.pool})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.SetSharing(ctx, true, "test"); err != nil {
		t.Fatal(err)
	}
	svc.Start(ctx)
	defer svc.Close()
	if !svc.Record(rec("o1", "k1", "gpt-4o", 200)) {
		t.Fatal("record refused")
	}
	svc.Flush(ctx)
	defer func() {
		if t.Failed() {
			t.Logf("url %s status %+v", cp.enroll.NATSURL, svc.Status())
		}
	}()
	waitFor(t, "the batch, through the second node", func() bool { return cp.ing.Stats().Stored == 1 })
}
