package telemetry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/keyring"
	"github.com/persiv/codex/shared/wire"
)

// Defaults of Options.
const (
	// DefaultWindow is the aggregation window the edge is configured with
	// unless told otherwise (CODEX_TELEMETRY_WINDOW); Open requires one.
	DefaultWindow          = time.Minute
	DefaultQueue           = 8192
	DefaultSpoolMaxBatches = 10000
	DefaultSpoolMaxBytes   = 256 << 20
	DefaultPoll            = time.Second
	DefaultMaxBackoff      = 30 * time.Second
	// DefaultSpoolLease is how long a replica sharing the state holds a
	// batch it claimed before another replica may send it: longer than a
	// publish attempt (10s), so a live sender keeps its batch.
	DefaultSpoolLease = 30 * time.Second
	// PublishTimeout bounds one attempt to publish a batch and have it
	// acknowledged. A spool lease must be longer.
	PublishTimeout = 10 * time.Second
	// rowsPerBatch keeps a batch well under wire.MaxBatchBytes; a window
	// with more rows goes out as several batches.
	rowsPerBatch = 1000
)

// Options configure a Service.
type Options struct {
	// State is where the link's state lives; nil: the files in Dir
	// (OpenFiles with the spool bounds below).
	State   State
	Dir     Dir
	Keyring *keyring.Keyring // over OpenKeyStore(Dir.KeyStorePath()), or the shared store's telemetry keys
	// Instance names this replica in the ledger entries it writes
	// (default: the host name). It stays on the edge; what leaves is
	// the random id Service.InstanceID draws instead.
	Instance string
	// Window is the aggregation window (CODEX_TELEMETRY_WINDOW), at most
	// wire.MaxWindow.
	Window          time.Duration
	Queue           int
	SpoolMaxBatches int
	SpoolMaxBytes   int64
	// Names, when set, labels workspaces and keys by name instead of
	// HMAC pseudonyms (the customer's opt-in).
	Names *Names
	// Poll is how often the switch and enrollment files are re-read, so a
	// CLI change reaches a running serve.
	Poll       time.Duration
	MaxBackoff time.Duration
	// RootCAs verifies the NATS server's certificate (nil: the system's).
	RootCAs *x509.CertPool
	// Pins, when set (CODEX_CONTROLPLANE_PINS), are the keys the NATS
	// server's certificate must have: the connection then always uses
	// TLS, and any other key is refused, logged and counted.
	Pins   Pins
	Logger *slog.Logger
	// Minimize are the metadata minimization settings
	// (CODEX_TELEMETRY_DIMENSIONS, CODEX_TELEMETRY_MIN_COUNT,
	// CODEX_TELEMETRY_HEARTBEAT); each batch carries them.
	Minimize Minimize
	// Enroll, when set (CODEX_CONTROLPLANE_URL and CODEX_ENROLLMENT_TOKEN
	// configured), enrolls the edge. It runs only when sharing is
	// switched on through the admin API while not enrolled: with sharing
	// off the edge makes no connection to the control plane at all.
	Enroll func(context.Context) error
	// Budgets, when set, returns the budgets the edge enforces and their
	// use, which each window's first batch carries (schema version 2).
	Budgets func(ctx context.Context) []Budget
}

// Budget is a budget of an org (KeyID empty) or key and its use in the
// current period, as telemetry shares it.
type Budget struct {
	OrgID, KeyID string
	Period       string // "day" or "month"
	CapNanoUSD   int64
	SpentNanoUSD int64
}

// Service runs the edge's side of the hybrid link.
type Service struct {
	opts Options
	log  *slog.Logger
	agg  *Aggregator
	st   State
	wake chan struct{}
	// instance is the random id of this process that every batch it
	// encodes carries (wire.UsageBatch.Instance), so the control plane
	// can count the replicas that share the deployment's edge id.
	instance string

	// spooling guards unspooled (see emit), which emit and watch retry.
	spooling  sync.Mutex
	unspooled unspooled

	// reloading serializes reload: without it, the file watcher's read
	// of the switch, taken before an admin API change, could be applied
	// after it and turn sharing off again until the next poll.
	reloading sync.Mutex

	mu       sync.Mutex
	enr      Enrollment
	enrolled bool
	sharing  Sharing
	lastErr  string
	labels   atomic.Pointer[Labeler]
	pseudoOf []byte // the sealed pseudonym secret the labels were made from

	connected atomic.Bool
	sent      atomic.Int64
	failures  atomic.Int64
	// unexpectedDups counts duplicate acknowledgements of batches never
	// acknowledged before.
	unexpectedDups atomic.Int64

	cancel  context.CancelFunc
	aggDone chan struct{}
	bgDone  chan struct{}
}

// Open loads the telemetry directory. It makes no network connection.
func Open(opts Options) (*Service, error) {
	if opts.Window <= 0 || opts.Window > wire.MaxWindow {
		return nil, fmt.Errorf("telemetry window must be in (0, %s]", wire.MaxWindow)
	}
	if opts.SpoolMaxBatches <= 0 {
		opts.SpoolMaxBatches = DefaultSpoolMaxBatches
	}
	if opts.SpoolMaxBytes <= 0 {
		opts.SpoolMaxBytes = DefaultSpoolMaxBytes
	}
	if opts.Poll <= 0 {
		opts.Poll = DefaultPoll
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = DefaultMaxBackoff
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Instance == "" {
		opts.Instance, _ = os.Hostname()
	}
	if opts.State == nil {
		f, err := OpenFiles(opts.Dir, opts.SpoolMaxBatches, opts.SpoolMaxBytes)
		if err != nil {
			return nil, err
		}
		opts.State = f
	}
	s := &Service{opts: opts, log: opts.Logger.With("component", "telemetry"), agg: NewAggregator(opts.Queue), st: opts.State,
		wake: make(chan struct{}, 1), instance: wire.NewInstance()}
	s.agg.Minimize = opts.Minimize
	s.reload(context.Background())
	return s, nil
}

// Record implements proxy.Sink: it never blocks.
func (s *Service) Record(rec edge.RequestRecord) bool { return s.agg.Record(rec) }

// Workspace implements Labeler over the current labels.
func (s *Service) Workspace(orgID string) string {
	if l := s.labels.Load(); l != nil {
		return (*l).Workspace(orgID)
	}
	return "unlabelled"
}

// KeyRef implements Labeler over the current labels.
func (s *Service) KeyRef(orgID, keyID string) string {
	if l := s.labels.Load(); l != nil {
		return (*l).KeyRef(orgID, keyID)
	}
	return "unlabelled"
}

// Start runs the aggregator, the file watcher and the sender until Close.
func (s *Service) Start(ctx context.Context) {
	ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	aggCtx, aggCancel := context.WithCancel(ctx)
	s.aggDone, s.bgDone = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(s.aggDone)
		s.agg.Run(aggCtx, s.opts.Window, s, s.emit)
	}()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.watch(ctx) }()
	go func() { defer wg.Done(); s.send(ctx) }()
	go func() {
		<-ctx.Done()
		aggCancel()
		wg.Wait()
		close(s.bgDone)
	}()
}

// Close stops the service: the current window is closed into the spool
// (if sharing is on) and the connection, if any, is closed.
func (s *Service) Close() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	<-s.aggDone
	<-s.bgDone
}

// Flush closes the current window now and spools it; for tests and the
// demo, so totals need not wait for the window.
func (s *Service) Flush(ctx context.Context) { s.agg.Flush(ctx) }

// SetSharing switches sharing and persists the switch; by says who.
func (s *Service) SetSharing(ctx context.Context, on bool, by string) error {
	if err := s.st.SetSharing(ctx, Sharing{On: on, ChangedAt: time.Now().UTC(), By: by}); err != nil {
		return err
	}
	s.reload(ctx)
	return nil
}

func (s *Service) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// watch re-reads the switch and enrollment, so a change made by the CLI
// in another process, or by another replica, takes effect within Poll.
func (s *Service) watch(ctx context.Context) {
	t := time.NewTicker(s.opts.Poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.reload(ctx)
			s.spoolWaiting(ctx)
		}
	}
}

// reload applies the files' state.
func (s *Service) reload(ctx context.Context) {
	s.reloading.Lock()
	defer s.reloading.Unlock()
	sh, err := s.st.Sharing(ctx)
	if errors.Is(err, ErrUnavailable) {
		// The store is down, not the switch changed: it stays as last
		// read (nothing can be spooled or claimed meanwhile anyway).
		s.setErr("read sharing switch: " + err.Error())
		return
	}
	if err != nil {
		s.setErr("read sharing switch: " + err.Error())
		sh = Sharing{} // unreadable means off
	}
	enr, enrolled, err := s.st.Enrollment(ctx)
	if errors.Is(err, ErrUnavailable) {
		s.setErr("read enrollment: " + err.Error())
		return
	}
	if err != nil {
		s.setErr("read enrollment: " + err.Error())
		enrolled = false
	}
	s.mu.Lock()
	changed := sh.On != s.sharing.On || enrolled != s.enrolled || enr.EdgeID != s.enr.EdgeID
	s.sharing, s.enr, s.enrolled = sh, enr, enrolled
	needLabels := enrolled && s.labels.Load() == nil || string(enr.SealedPseudonym) != string(s.pseudoOf)
	s.mu.Unlock()
	if enrolled && needLabels {
		if err := s.makeLabels(ctx, enr); err != nil {
			s.setErr(err.Error())
		}
	}
	on := sh.On && enrolled && s.labels.Load() != nil
	s.agg.SetOn(on)
	if changed {
		s.log.Info("telemetry sharing", "on", sh.On, "enrolled", enrolled, "edge_id", enr.EdgeID)
		s.poke()
	}
}

func (s *Service) makeLabels(ctx context.Context, enr Enrollment) error {
	var l Labeler
	if s.opts.Names != nil {
		l = s.opts.Names
	} else {
		secret, err := s.opts.Keyring.Open(ctx, KeyOrg, keyring.PurposeTelemetry, recordPseudonym, enr.SealedPseudonym)
		if err != nil {
			return fmt.Errorf("open the pseudonym secret: %w", err)
		}
		l = Pseudonyms{Secret: secret}
	}
	s.labels.Store(&l)
	s.mu.Lock()
	s.pseudoOf = enr.SealedPseudonym
	s.mu.Unlock()
	return nil
}

func (s *Service) setErr(msg string) {
	s.mu.Lock()
	changed := s.lastErr != msg
	s.lastErr = msg
	s.mu.Unlock()
	if changed && msg != "" {
		s.log.Warn("telemetry", "err", msg)
	}
}

// active reports whether batches may be produced and sent, and for whom.
func (s *Service) active() (Enrollment, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.enr, s.sharing.On && s.enrolled
}

// emit turns a closed window into batches in the spool.
func (s *Service) emit(w Window) {
	s.spooling.Lock()
	defer s.spooling.Unlock()
	enr, on := s.active()
	if !on {
		s.unspooled = unspooled{}
		return // gathered while on, but the customer has switched off since
	}
	ctx, cancel := context.WithTimeout(context.Background(), stateTimeout)
	defer cancel()
	if s.retryUnspooled(ctx, enr) {
		s.spoolWindow(ctx, enr, w, s.budgets())
	} else {
		s.unspooled.windows = append(s.unspooled.windows, w)
	}
	if n := s.unspooled.len(); n > 0 {
		dropped := s.unspooled.trim(MaxUnspooled)
		s.log.Warn("telemetry: the state cannot be written; closed windows wait in memory", "batches_and_windows", n-dropped, "dropped", dropped)
	}
	s.poke()
}

// spoolWaiting retries what closed windows left unspooled (see emit);
// the watcher calls it every Poll, since windows without usage may not
// be emitted for long.
func (s *Service) spoolWaiting(ctx context.Context) {
	s.spooling.Lock()
	defer s.spooling.Unlock()
	if s.unspooled.len() == 0 {
		return
	}
	enr, on := s.active()
	if !on {
		s.unspooled = unspooled{}
		return
	}
	ctx, cancel := context.WithTimeout(ctx, stateTimeout)
	defer cancel()
	if s.retryUnspooled(ctx, enr) {
		s.log.Info("telemetry: the windows that waited in memory are spooled")
	}
	s.poke()
}

// MaxUnspooled bounds the encoded batches and closed windows that wait in
// memory while the state cannot be written (Postgres unreachable); past
// it the oldest are dropped.
const MaxUnspooled = 1000

// unspooled is what closed windows produced that the state could not
// take; retried, oldest first, when the next window closes or the
// watcher next looks (spoolWaiting), under Service.spooling.
type unspooled struct {
	batches []encodedBatch // numbered and encoded
	windows []Window       // rows not numbered yet
}

type encodedBatch struct {
	seq  int64
	data []byte
}

func (u *unspooled) len() int { return len(u.batches) + len(u.windows) }

// trim drops the oldest beyond max and returns how many.
func (u *unspooled) trim(max int) int {
	n := 0
	for ; u.len() > max; n++ {
		if len(u.batches) > 0 {
			u.batches = u.batches[1:]
		} else {
			u.windows = u.windows[1:]
		}
	}
	return n
}

// retryUnspooled stores what earlier windows could not, and reports
// whether all of it is stored now.
func (s *Service) retryUnspooled(ctx context.Context, enr Enrollment) bool {
	for len(s.unspooled.batches) > 0 {
		b := s.unspooled.batches[0]
		if err := s.spoolBatch(ctx, b.seq, b.data); err != nil {
			s.setErr(err.Error())
			s.failures.Add(1)
			return false
		}
		s.unspooled.batches = s.unspooled.batches[1:]
	}
	windows := s.unspooled.windows
	s.unspooled.windows = nil
	for i, w := range windows {
		if !s.spoolWindow(ctx, enr, w, nil) {
			s.unspooled.windows = append(s.unspooled.windows, windows[i+1:]...)
			return false
		}
	}
	return true
}

// spoolWindow numbers, encodes and spools a window's batches; what the
// state cannot take waits in s.unspooled, and ok is false.
func (s *Service) spoolWindow(ctx context.Context, enr Enrollment, w Window, budgets []wire.BudgetUse) bool {
	failed := false
	rows := w.Rows
	// The window's first batch carries its budgets, memories and audit
	// counts.
	extra := extras{budgets: budgets, memories: w.Memories, audit: w.Audit}
	for first := true; first || len(rows) > 0; first = false {
		n := min(len(rows), rowsPerBatch)
		// Taken from the state before use: after a crash a number is
		// skipped, never reused for different content, and replicas
		// sharing the state never take the same one.
		seq, err := s.st.NextSeq(ctx)
		if err != nil {
			s.setErr("batch sequence: " + err.Error())
			s.failures.Add(1)
			s.unspooled.windows = append(s.unspooled.windows, Window{Start: w.Start, End: w.End, Rows: rows, Memories: extra.memories, Audit: extra.audit})
			return false
		}
		for {
			data, err := s.encode(enr, w, seq, rows[:n], extra)
			if errors.Is(err, wire.ErrInvalid) && n > 1 {
				n /= 2 // too large: split further
				continue
			}
			if err != nil {
				s.setErr("encode batch: " + err.Error())
				s.failures.Add(1)
				break
			}
			if err := s.spoolBatch(ctx, seq, data); err != nil {
				s.setErr(err.Error())
				s.failures.Add(1)
				s.unspooled.batches = append(s.unspooled.batches, encodedBatch{seq, data})
				failed = true
			}
			break
		}
		rows = rows[n:]
		extra = extras{}
	}
	return !failed
}

// budgets labels the budgets the edge enforces as a batch carries them.
func (s *Service) budgets() []wire.BudgetUse {
	if s.opts.Budgets == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	type key struct{ ws, ref, period string }
	seen := map[key]bool{}
	var out []wire.BudgetUse
	for _, b := range s.opts.Budgets(ctx) {
		u := wire.BudgetUse{Workspace: s.Workspace(b.OrgID), KeyRef: s.KeyRef(b.OrgID, b.KeyID), Period: b.Period,
			CapNanoUSD: min(b.CapNanoUSD, wire.MaxCount), SpentNanoUSD: min(max(b.SpentNanoUSD, 0), wire.MaxCount)}
		k := key{u.Workspace, u.KeyRef, u.Period}
		if seen[k] || u.CapNanoUSD < 1 || len(out) == wire.MaxBudgets {
			continue
		}
		seen[k] = true
		out = append(out, u)
	}
	return out
}

// extras are what a window's first batch carries besides rows.
type extras struct {
	budgets  []wire.BudgetUse
	memories []wire.MemoryUse
	audit    []wire.AuditCount
}

// encode makes a batch in the newest version the control plane said it
// takes at enrollment, dropping what that version cannot carry
// (wire.UsageBatch.AsVersion): a version 2 control plane gets no
// memories and audit counts; one that said nothing gets version 1,
// without limit counts and budgets either.
func (s *Service) encode(enr Enrollment, w Window, seq int64, rows []wire.UsageRow, x extras) ([]byte, error) {
	b := &wire.UsageBatch{SchemaVersion: wire.SchemaVersion, WindowStart: w.Start, WindowEnd: w.End,
		OrgID: enr.OrgID, EdgeID: enr.EdgeID, Seq: seq, Rows: rows, Budgets: x.budgets, Settings: s.opts.Minimize.Settings(),
		Memories: x.memories, Audit: x.audit, Instance: s.instance}
	return wire.Encode(b.AsVersion(wire.Negotiate(enr.SchemaVersions)))
}

func (s *Service) spoolBatch(ctx context.Context, seq int64, data []byte) error {
	dropped, err := s.st.Put(ctx, seq, data)
	if dropped > 0 {
		st := s.spoolStats()
		s.log.Warn("telemetry spool full: oldest batches dropped", "dropped", dropped,
			"max_batches", st.MaxBatches, "max_bytes", st.MaxBytes, "dropped_total", st.Dropped)
	}
	return err
}

// link is a connection to the control plane's NATS.
type link struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	kp  nkeys.KeyPair
	enr Enrollment
}

func (s *Service) connect(ctx context.Context, enr Enrollment) (*link, error) {
	seed, err := s.opts.Keyring.Open(ctx, KeyOrg, keyring.PurposeTelemetry, recordSeed, enr.SealedSeed)
	if err != nil {
		return nil, fmt.Errorf("open the nats seed: %w", err)
	}
	kp, err := nkeys.FromSeed(seed)
	clear(seed)
	if err != nil {
		return nil, fmt.Errorf("nats seed: %w", err)
	}
	hosts, secure, err := natsServers(enr.NATSURL)
	if err != nil {
		kp.Wipe()
		return nil, err
	}
	jwtCB := func() (string, error) { return enr.UserJWT, nil }
	opts := []nats.Option{
		nats.UserJWT(jwtCB, func(nonce []byte) ([]byte, error) { return kp.Sign(nonce) }),
		nats.Name("codex-edge " + enr.EdgeID),
		nats.Timeout(5 * time.Second),
		// The sender reconnects itself, so that switching sharing off
		// leaves no client retrying in the background.
		nats.NoReconnect(),
		nats.NoCallbacksAfterClientClose(),
	}
	if enr.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(enr.InboxPrefix))
	}
	if secure || len(s.opts.Pins) > 0 {
		// No ServerName: nats.go checks each node's certificate against
		// the host it dials, so a list of nodes works over TLS.
		opts = append(opts, nats.Secure(s.opts.Pins.TLSConfig(&tls.Config{MinVersion: tls.VersionTLS13, RootCAs: s.opts.RootCAs})))
	}
	nc, err := nats.Connect(enr.NATSURL, opts...)
	if err != nil {
		kp.Wipe()
		if errors.Is(err, ErrPinMismatch) {
			s.log.Error("telemetry: connection to the control plane's NATS refused: its certificate's key is not pinned (CODEX_CONTROLPLANE_PINS)",
				"hosts", hosts, "err", err)
		}
		return nil, fmt.Errorf("connect to %s: %w", hosts, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		kp.Wipe()
		return nil, err
	}
	s.connected.Store(true)
	return &link{nc: nc, js: js, kp: kp, enr: enr}, nil
}

// natsServers reads the NATS URL the control plane gave at enrollment:
// one server, or a cluster's nodes separated by commas (nats.go tries
// them in turn). It returns their hosts, and whether TLS is required: a
// tls:// URL, or any node off loopback (metrics never cross a network in
// the clear).
func natsServers(list string) (hosts string, secure bool, err error) {
	var hs []string
	for raw := range strings.SplitSeq(list, ",") {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil || u.Host == "" {
			return "", false, fmt.Errorf("nats url %q: not a URL (want nats://host:port or tls://host:port, comma-separated for a cluster)", raw)
		}
		if u.Scheme == "tls" || !isLoopbackHost(u.Hostname()) {
			secure = true
		}
		hs = append(hs, u.Host)
	}
	return strings.Join(hs, ","), secure, nil
}

func (s *Service) disconnect(l **link) {
	if *l != nil {
		(*l).nc.Close()
		(*l).kp.Wipe()
		*l = nil
		s.connected.Store(false)
	}
}

// send delivers spooled batches in order while sharing is on, one at a
// time, each after the previous one was acknowledged.
func (s *Service) send(ctx context.Context) {
	var l *link
	defer s.disconnect(&l)
	backoff := time.Duration(0)
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	// The spool is also looked at every Poll: on shared state another
	// replica's batches (one that stopped holding them) arrive without a
	// wake-up here. A failed send still waits out its backoff.
	poll := time.NewTicker(s.opts.Poll)
	defer poll.Stop()
	for {
		if backoff > 0 {
			retry.Reset(backoff)
		}
	wait:
		for {
			select {
			case <-ctx.Done():
				return
			case <-s.wake:
				break wait
			case <-retry.C:
				break wait
			case <-poll.C:
				if backoff == 0 {
					break wait
				}
			}
		}
		enr, on := s.active()
		if !on || (l != nil && l.enr.EdgeID != enr.EdgeID) {
			s.disconnect(&l)
		}
		if !on {
			backoff = 0
			continue
		}
		ok, err := s.drain(ctx, enr, &l)
		switch {
		case err != nil && ctx.Err() == nil:
			s.failures.Add(1)
			s.setErr(err.Error())
			s.disconnect(&l)
			backoff = min(max(2*backoff, 250*time.Millisecond), s.opts.MaxBackoff)
		case ok:
			s.setErr("")
			backoff = 0
		}
	}
}

// drain sends spooled batches until the spool is empty, sharing goes off
// or a send fails.
func (s *Service) drain(ctx context.Context, enr Enrollment, l **link) (bool, error) {
	for {
		if cur, on := s.active(); !on || cur.EdgeID != enr.EdgeID {
			return true, nil
		}
		c, ok, err := s.st.Claim(ctx)
		if err != nil || !ok {
			return true, err
		}
		seq, data := c.Seq, c.Data
		b, err := wire.Decode(data)
		if err != nil || b.EdgeID != enr.EdgeID || b.OrgID != enr.OrgID {
			// Made for an earlier enrollment (or damaged): it cannot go to
			// this subject, and was never sent from here.
			s.log.Warn("telemetry: dropping a spooled batch of another enrollment", "seq", seq)
			if err := s.st.Ack(ctx, seq, false); err != nil {
				return false, err
			}
			continue
		}
		if *l == nil {
			if *l, err = s.connect(ctx, enr); err != nil {
				return false, err
			}
		}
		msgID := wire.MsgID(enr.EdgeID, seq)
		// Written before the first attempt: whatever may have left is in
		// the ledger, and a retry (by any replica) is the same message,
		// not a new one.
		e := LedgerEntry{Time: time.Now().UTC(), NATSURL: enr.NATSURL, Subject: enr.Subject, MsgID: msgID, Seq: seq, Instance: s.opts.Instance}
		if err := s.st.AppendLedger(ctx, e, data); err != nil {
			return false, err
		}
		pctx, cancel := context.WithTimeout(ctx, PublishTimeout)
		ack, err := (*l).js.Publish(pctx, enr.Subject, data, jetstream.WithMsgID(msgID))
		cancel()
		if err != nil {
			return false, fmt.Errorf("publish batch %d: %w", seq, err)
		}
		if ack.Duplicate && c.Retaken {
			// Another replica of this deployment held the batch and let
			// its lease expire: it published it before it stopped, and
			// the stream kept that copy. Delivered, once.
			s.log.Info("telemetry: batch left by another replica was delivered already", "seq", seq, "msg_id", msgID)
		} else if ack.Duplicate {
			// The batch leaves the spool only once acknowledged, so no
			// earlier attempt of ours was: the stream holds another
			// message under our Msg-Id (another publisher chose it) and
			// dropped this one. Retried after the backoff, past the
			// stream's short duplicate window.
			s.unexpectedDups.Add(1)
			s.log.Error("telemetry: batch acknowledged as a duplicate, but it was never acknowledged before; kept in the spool to retry",
				"seq", seq, "msg_id", msgID, "stream", ack.Stream)
			return false, fmt.Errorf("publish batch %d: acknowledged as a duplicate of a message this edge never had acknowledged (Nats-Msg-Id %s taken by another publisher); kept to retry", seq, msgID)
		}
		s.sent.Add(1)
		if err := s.st.Ack(ctx, seq, true); err != nil {
			return false, err
		}
	}
}

// stateTimeout bounds one use of the state outside a request (a window's
// batches, a status or metrics read).
const stateTimeout = 10 * time.Second

// spoolStats reads the spool's stats for a status or a metric; an
// unreadable state reads as an empty spool.
func (s *Service) spoolStats() SpoolStats {
	ctx, cancel := context.WithTimeout(context.Background(), stateTimeout)
	defer cancel()
	st, err := s.st.SpoolStats(ctx)
	if err != nil {
		s.setErr("spool stats: " + err.Error())
	}
	return st
}

// Status is what `codex-edge telemetry status` and the admin API report.
type Status struct {
	Sharing          bool       `json:"sharing"`
	SharingChangedAt *time.Time `json:"sharing_changed_at,omitempty"`
	Enrolled         bool       `json:"enrolled"`
	EdgeID           string     `json:"edge_id,omitempty"`
	OrgID            string     `json:"org_id,omitempty"`
	ControlPlaneURL  string     `json:"control_plane_url,omitempty"`
	NATSURL          string     `json:"nats_url,omitempty"`
	Subject          string     `json:"subject,omitempty"`
	Names            bool       `json:"names"` // labels are names, not pseudonyms
	LastSeq          int64      `json:"last_seq"`
	LastSentSeq      int64      `json:"last_sent_seq"`
	LastSentAt       *time.Time `json:"last_sent_at,omitempty"`
	Spool            SpoolStats `json:"spool"`
	Running          bool       `json:"running"` // reported by a running serve
	// Instance is the random id the running serve's batches carry
	// (Service.InstanceID); the CLI, which sends nothing, has none.
	Instance   string          `json:"instance,omitempty"`
	Connected  bool            `json:"connected"`
	LastError  string          `json:"last_error,omitempty"`
	Aggregator AggregatorStats `json:"-"`
}

// ReadStatus reports the state kept in d, for the CLI (a running serve may
// be sending meanwhile); the bounds are the configured spool bounds.
func ReadStatus(d Dir, maxBatches int, maxBytes int64) (Status, error) {
	f, err := OpenFiles(d, maxBatches, maxBytes)
	if err != nil {
		return Status{}, err
	}
	return StatusOf(context.Background(), f)
}

// StatusOf reports the state kept in st, for the CLI.
func StatusOf(ctx context.Context, st State) (Status, error) {
	var out Status
	sh, err := st.Sharing(ctx)
	if err != nil {
		return out, err
	}
	enr, ok, err := st.Enrollment(ctx)
	if err != nil {
		return out, err
	}
	p, err := st.Progress(ctx)
	if err != nil {
		return out, err
	}
	sp, err := st.SpoolStats(ctx)
	if err != nil {
		return out, err
	}
	fill(&out, sh, enr, ok, p, sp)
	return out, nil
}

func fill(st *Status, sh Sharing, enr Enrollment, enrolled bool, p Progress, sp SpoolStats) {
	st.Sharing, st.Enrolled = sh.On, enrolled
	if !sh.ChangedAt.IsZero() {
		t := sh.ChangedAt
		st.SharingChangedAt = &t
	}
	if enrolled {
		st.EdgeID, st.OrgID, st.ControlPlaneURL, st.NATSURL, st.Subject = enr.EdgeID, enr.OrgID, enr.ControlPlaneURL, enr.NATSURL, enr.Subject
	}
	st.LastSeq, st.LastSentSeq = p.LastSeq, p.LastSentSeq
	if !p.LastSentAt.IsZero() {
		t := p.LastSentAt
		st.LastSentAt = &t
	}
	st.Spool = sp
}

// Status reports the running service's state.
func (s *Service) Status() Status {
	var st Status
	ctx, cancel := context.WithTimeout(context.Background(), stateTimeout)
	defer cancel()
	p, err := s.st.Progress(ctx)
	if err != nil {
		s.setErr("read progress: " + err.Error())
	}
	sp := s.spoolStats()
	s.mu.Lock()
	fill(&st, s.sharing, s.enr, s.enrolled, p, sp)
	st.LastError = s.lastErr
	s.mu.Unlock()
	st.Names = s.opts.Names != nil
	st.Running, st.Connected, st.Instance = true, s.connected.Load(), s.instance
	st.Aggregator = s.agg.Stats()
	return st
}

// InstanceID returns the random id this process drew at start
// (wire.NewInstance), which every batch it encodes carries: derived from
// nothing about the host, so it tells replicas apart without naming one.
func (s *Service) InstanceID() string { return s.instance }

// Ledger returns every ledger entry.
func (s *Service) Ledger(ctx context.Context) ([]LedgerEntry, error) { return s.st.Ledger(ctx) }

// State returns the state the service keeps its enrollment, spool and
// ledger in.
func (s *Service) State() State { return s.st }

// The spool's metrics: one spoolCollector reads them all with one
// SpoolStats (a query of the shared store on Postgres) per scrape.
var (
	spoolBatchesDesc    = prometheus.NewDesc("codex_edge_telemetry_spool_batches", "Batches waiting in the spool.", nil, nil)
	spoolBytesDesc      = prometheus.NewDesc("codex_edge_telemetry_spool_bytes", "Bytes waiting in the spool.", nil, nil)
	spoolMaxBatchesDesc = prometheus.NewDesc("codex_edge_telemetry_spool_max_batches", "Spool bound in batches (CODEX_TELEMETRY_SPOOL_MAX_BATCHES).", nil, nil)
	spoolMaxBytesDesc   = prometheus.NewDesc("codex_edge_telemetry_spool_max_bytes", "Spool bound in bytes (CODEX_TELEMETRY_SPOOL_MAX_BYTES).", nil, nil)
	spoolDroppedDesc    = prometheus.NewDesc("codex_edge_telemetry_spool_dropped_total", "Batches dropped because the spool was full.", nil, nil)
)

type spoolCollector struct{ s *Service }

func (spoolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{spoolBatchesDesc, spoolBytesDesc, spoolMaxBatchesDesc, spoolMaxBytesDesc, spoolDroppedDesc} {
		ch <- d
	}
}

func (c spoolCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.spoolStats()
	ch <- prometheus.MustNewConstMetric(spoolBatchesDesc, prometheus.GaugeValue, float64(st.Batches))
	ch <- prometheus.MustNewConstMetric(spoolBytesDesc, prometheus.GaugeValue, float64(st.Bytes))
	ch <- prometheus.MustNewConstMetric(spoolMaxBatchesDesc, prometheus.GaugeValue, float64(st.MaxBatches))
	ch <- prometheus.MustNewConstMetric(spoolMaxBytesDesc, prometheus.GaugeValue, float64(st.MaxBytes))
	ch <- prometheus.MustNewConstMetric(spoolDroppedDesc, prometheus.CounterValue, float64(st.Dropped))
}

// Collectors returns the service's Prometheus metrics.
func (s *Service) Collectors() []prometheus.Collector {
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f)
	}
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	return []prometheus.Collector{
		gauge("codex_edge_telemetry_sharing", "1 while metric sharing is switched on.", func() float64 { _, on := s.active(); return b2f(on) }),
		gauge("codex_edge_telemetry_connected", "1 while connected to the control plane's NATS.", func() float64 { return b2f(s.connected.Load()) }),
		spoolCollector{s},
		counter("codex_edge_telemetry_batches_sent_total", "Batches acknowledged by the control plane's JetStream.", func() float64 { return float64(s.sent.Load()) }),
		counter("codex_edge_telemetry_failures_total", "Failed connection or publish attempts (retried).", func() float64 { return float64(s.failures.Load()) }),
		counter("codex_edge_telemetry_unexpected_duplicates_total", "Batches the control plane's JetStream acknowledged as duplicates although never acknowledged before (another publisher used their Nats-Msg-Id); each is kept and retried.", func() float64 { return float64(s.unexpectedDups.Load()) }),
		counter("codex_edge_telemetry_pin_mismatches_total", "Connections to the control plane (enrollment, NATS) refused because its certificate's key is not in CODEX_CONTROLPLANE_PINS.", func() float64 { return float64(PinMismatches()) }),
		counter("codex_edge_telemetry_records_dropped_total", "Request records not aggregated because the telemetry queue was full.", func() float64 { return float64(s.agg.Stats().Dropped) }),
	}
}
