package ingest_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/persiv/codex/controlplane"
	"github.com/persiv/codex/controlplane/enroll"
	"github.com/persiv/codex/controlplane/ingest"
	"github.com/persiv/codex/controlplane/natsauth"
	"github.com/persiv/codex/controlplane/natsbus"
	"github.com/persiv/codex/controlplane/store/postgres"
	"github.com/persiv/codex/controlplane/store/postgres/pgtest"
	"github.com/persiv/codex/controlplane/store/storetest"
	"github.com/persiv/codex/controlplane/testenv"
	"github.com/persiv/codex/shared/wire"
)

// clusterConnect connects with creds to the cluster, trying urls in their
// order first, and reconnecting to any node for ever, as serve does.
func clusterConnect(t testing.TB, creds func() ([]byte, error), urls []string) *nats.Conn {
	t.Helper()
	c, err := creds()
	if err != nil {
		t.Fatal(err)
	}
	opt, err := natsbus.Creds(c)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(strings.Join(urls, ","), opt, nats.CustomInboxPrefix("_CODEX_CP"), nats.DontRandomize(),
		nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// cpInstance is one instance of the control plane's ingest.
type cpInstance struct {
	in       *ingest.Ingester
	accounts *natsbus.Accounts
	nc       *nats.Conn
	cancel   context.CancelFunc
	done     chan struct{} // closed when Run returned runErr
	runErr   error
}

// stop ends the instance's Run and closes its connection.
func (c *cpInstance) stop(t testing.TB) {
	t.Helper()
	c.cancel()
	<-c.done
	if c.runErr != nil {
		t.Error(c.runErr)
	}
	c.nc.Close()
}

// loadBatch is batch seq of ed, in one of the 100 minutes after start
// (whose windows have all ended): an edge's batches are as many as the
// load lasts.
func loadBatch(ed testenv.Edge, seq int64) *wire.UsageBatch {
	return storetest.Batch(ed.OrgID, ed.EdgeID, seq, start.Add(time.Duration(seq%100)*time.Minute), 3)
}

// loadAckWait is TestClusterFailover's Limits.AckWait: the batches an
// instance or a node held when lost are delivered again after it.
const loadAckWait = 5 * time.Second

// publishUntil publishes ed's batches 1, 2, … one at a time, each retried
// until acknowledged as codex-edge does (a failed publish drops the
// connection; a duplicate acknowledgement of a batch never acknowledged
// is retried past the duplicate window), until stop is closed. It
// returns the last batch acknowledged.
func publishUntil(ctx context.Context, ed testenv.Edge, stop <-chan struct{}, acked *atomic.Int64) (int64, error) {
	var nc *nats.Conn
	defer func() {
		if nc != nil {
			nc.Close()
		}
	}()
	var js jetstream.JetStream
	var backoff time.Duration
	for seq := int64(1); ; seq++ {
		select {
		case <-stop:
			return seq - 1, nil
		default:
		}
		data, err := wire.Encode(loadBatch(ed, seq))
		if err != nil {
			return seq - 1, err
		}
		for {
			if backoff > 0 {
				select {
				case <-ctx.Done():
					return seq - 1, ctx.Err()
				case <-time.After(backoff):
				}
			}
			if nc == nil {
				if nc, err = ed.Connect(); err != nil {
					nc = nil
					backoff = min(max(2*backoff, 250*time.Millisecond), time.Second)
					continue
				}
				if js, err = jetstream.New(nc); err != nil {
					return seq - 1, err
				}
			}
			ack, err := publish(ctx, js, ed.Subject, data, wire.MsgID(ed.EdgeID, seq))
			if err == nil && !ack.Duplicate {
				backoff = 0
				break
			}
			nc.Close()
			nc = nil
			backoff = min(max(2*backoff, 250*time.Millisecond), time.Second)
		}
		acked.Add(1)
	}
}

// TestClusterFailover runs the ingest as two instances of the control
// plane on one Postgres database (each opening the NATS authority kept
// there) and a three-node JetStream cluster, with streams of three
// replicas, and loses one instance and one node (the leader of the first
// org's stream, whichever node that is) while four edges of two orgs
// publish. Every batch JetStream acknowledged is stored exactly once.
func TestClusterFailover(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	seal, err := testenv.Sealer(dir)
	if err != nil {
		t.Fatal(err)
	}
	owner, app := pgtest.FreshDB(t)
	// Each instance has its own pool on the one database, and opens the
	// NATS authority kept there: they share its keys (the sealer's key
	// too, as a deployment's instances do).
	open := func() (*postgres.Store, *natsauth.Authority) {
		st, err := postgres.Open(ctx, app)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		auth, err := natsauth.Open(ctx, filepath.Join(t.TempDir(), "keys"), natsauth.Options{Sealer: seal, Store: st})
		if err != nil {
			t.Fatal(err)
		}
		return st, auth
	}
	store, auth := open()
	nodes := testenv.Cluster(t, auth, 3)
	var urls []string
	for _, n := range nodes {
		urls = append(urls, n.ClientURL())
	}
	accounts := &natsbus.Accounts{Auth: auth, Sys: clusterConnect(t, auth.SystemCreds, urls)}
	newOrg := func() string {
		o := controlplane.Org{ID: controlplane.NewID("org"), Name: "Acme", CreatedAt: time.Now().UTC()}
		if err := store.CreateOrg(ctx, o); err != nil {
			t.Fatal(err)
		}
		return o.ID
	}
	// Each instance prefers its own node and moves to another when it
	// is lost.
	start := func(first int) *cpInstance {
		st, auth := open()
		nc := clusterConnect(t, auth.ServiceCreds, append(slices.Clone(urls[first:]), urls[:first]...))
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		in := &ingest.Ingester{Store: st, JS: js, Limits: ingest.Limits{Replicas: 3, AckWait: loadAckWait}, ReconcileEvery: 100 * time.Millisecond}
		if err := in.Setup(ctx, auth.Orgs()); err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithCancel(ctx)
		c := &cpInstance{in: in, nc: nc, cancel: cancel, done: make(chan struct{}),
			accounts: &natsbus.Accounts{Auth: auth, Sys: clusterConnect(t, auth.SystemCreds, urls)}}
		go func() { defer close(c.done); c.runErr = in.Run(rctx) }()
		t.Cleanup(func() { cancel(); <-c.done })
		return c
	}

	// The first org's stream was made with one replica, as a single
	// node control plane made it: the instances' Setup scales it to 3.
	org0, org1 := newOrg(), newOrg()
	{
		nc := clusterConnect(t, auth.ServiceCreds, urls)
		js, _ := jetstream.New(nc)
		single := &ingest.Ingester{Store: store, JS: js}
		svc := &enroll.Service{Store: store, Accounts: accounts, Streams: single, NATSURL: strings.Join(urls, ",")}
		var edges []testenv.Edge
		for range 2 {
			edges = append(edges, testenv.EnrollEdge(t, svc, org0))
		}
		info := streamInfo(t, js, org0)
		if info.Config.Replicas != 1 {
			t.Fatalf("stream made with %d replicas, want 1", info.Config.Replicas)
		}
		nc.Close()
		runLoad(t, ctx, loadSetup{nodes: nodes, store: store, owner: owner, start: start, urls: urls, org0: org0, org1: org1, edges0: edges})
	}
}

// loadSetup is what runLoad needs of TestClusterFailover.
type loadSetup struct {
	nodes      []*natsbus.Embedded
	store      controlplane.Store
	owner      string
	start      func(first int) *cpInstance
	urls       []string
	org0, org1 string
	edges0     []testenv.Edge
}

func streamInfo(t testing.TB, js jetstream.JetStream, org string) *jetstream.StreamInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, ingest.StreamName(org))
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// replicated reports whether a stream's or consumer's raft group has a
// leader and two replicas current with it: then it survives the loss of
// a node.
func replicated(c *jetstream.ClusterInfo) bool {
	if c == nil || c.Leader == "" || len(c.Replicas) != 2 {
		return false
	}
	for _, p := range c.Replicas {
		if !p.Current || p.Offline {
			return false
		}
	}
	return true
}

func runLoad(t *testing.T, ctx context.Context, s loadSetup) {
	began := time.Now()
	a, b := s.start(0), s.start(1)
	t.Logf("two instances set up in %v", time.Since(began).Round(time.Millisecond))
	// Setup brought the existing stream to 3 replicas; its consumer,
	// whose Replicas is 0, follows it.
	testenv.Eventually(t, 20*time.Second, "the first org's stream and consumer on 3 nodes", func() bool {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		stream, err := b.in.JS.Stream(sctx, ingest.StreamName(s.org0))
		if err != nil {
			return false
		}
		info, err := stream.Info(sctx)
		if err != nil || info.Config.Replicas != 3 || !replicated(info.Cluster) {
			return false
		}
		cons, err := stream.Consumer(sctx, ingest.ConsumerName)
		if err != nil {
			return false
		}
		ci, err := cons.Info(sctx)
		return err == nil && replicated(ci.Cluster)
	})
	// The second org is enrolled through instance a; b finds its stream.
	svc := &enroll.Service{Store: s.store, Accounts: a.accounts, Streams: a.in, NATSURL: strings.Join(s.urls, ",")}
	edges := slices.Clone(s.edges0)
	for range 2 {
		edges = append(edges, testenv.EnrollEdge(t, svc, s.org1))
	}
	if info := streamInfo(t, a.in.JS, s.org1); info.Config.Replicas != 3 {
		t.Fatalf("new stream has %d replicas, want 3", info.Config.Replicas)
	}
	testenv.Eventually(t, 10*time.Second, "instance b consuming both orgs", func() bool {
		return slices.Equal(b.in.Consumed(), slices.Sorted(slices.Values([]string{s.org0, s.org1})))
	})

	loadCtx, cancelLoad := context.WithTimeout(ctx, 60*time.Second)
	defer cancelLoad()
	stop := make(chan struct{})
	var acked atomic.Int64
	last := make([]int64, len(edges))
	errs := make([]error, len(edges))
	var wg sync.WaitGroup
	for i, ed := range edges {
		wg.Go(func() { last[i], errs[i] = publishUntil(loadCtx, ed, stop, &acked) })
	}
	stopped := false
	defer func() {
		if !stopped {
			close(stop)
			wg.Wait()
		}
	}()
	more := func(n int64, what string) {
		t.Helper()
		want := acked.Load() + n
		testenv.Eventually(t, 30*time.Second, what, func() bool { return acked.Load() >= want })
	}

	more(40, "40 batches acknowledged")
	began = time.Now()
	t.Logf("stopping instance a after %d batches acknowledged", acked.Load())
	a.stop(t)
	t.Logf("instance a stopped in %v", time.Since(began).Round(time.Millisecond))
	more(40, "40 more batches acknowledged after instance a stopped")

	leader := streamInfo(t, b.in.JS, s.org0).Cluster.Leader
	var lost *natsbus.Embedded
	for _, n := range s.nodes {
		if n.Name() == leader {
			lost = n
		}
	}
	if lost == nil {
		t.Fatalf("no node named %q leads the stream", leader)
	}
	began = time.Now()
	t.Logf("shutting down node %s (the first org's stream leader) after %d batches acknowledged", leader, acked.Load())
	lost.Shutdown()
	t.Logf("node %s shut down in %v", leader, time.Since(began).Round(time.Millisecond))
	more(40, "40 more batches acknowledged after a node was lost")
	t.Logf("40 more batches acknowledged %v after the shutdown began", time.Since(began).Round(time.Millisecond))
	close(stop)
	wg.Wait()
	stopped = true
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}

	// Every acknowledged batch, and no other, is stored, once.
	want := map[string]int64{}
	var total int64
	for i, ed := range edges {
		want[ed.EdgeID] = last[i]
		total += last[i]
	}
	db, err := pgx.Connect(ctx, s.owner)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close(ctx) }()
	var stored int64
	took := testenv.Eventually(t, 45*time.Second, fmt.Sprintf("the %d acknowledged batches stored", total), func() bool {
		if err := db.QueryRow(ctx, `SELECT count(*) FROM usage_batches`).Scan(&stored); err != nil {
			t.Fatal(err)
		}
		return stored >= total
	})
	t.Logf("every acknowledged batch stored %v after the load ended", took.Round(time.Millisecond))
	rows, err := db.Query(ctx, `SELECT edge_id, count(*), count(DISTINCT seq), min(seq), max(seq) FROM usage_batches GROUP BY edge_id`)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for rows.Next() {
		var edge string
		var n, distinct, lo, hi int64
		if err := rows.Scan(&edge, &n, &distinct, &lo, &hi); err != nil {
			t.Fatal(err)
		}
		if n != distinct || lo != 1 || hi != n {
			t.Errorf("edge %s: %d batches stored, %d distinct, seq %d to %d: want each of 1 to %d once", edge, n, distinct, lo, hi, want[edge])
		}
		got[edge] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got, want) {
		t.Errorf("batches stored per edge %v, acknowledged %v", got, want)
	}
	// Usage rows are not doubled: each batch is 3 rows of 2 requests.
	for _, org := range []string{s.org0, s.org1} {
		var batches int64
		for i, ed := range edges {
			if ed.OrgID == org {
				batches += last[i]
			}
		}
		if r := requests(t, s.store, org); r != 6*batches {
			t.Errorf("org %s: %d requests stored, want %d (%d batches)", org, r, 6*batches, batches)
		}
	}
	st := b.in.Stats()
	t.Logf("%d batches acknowledged and stored; instance a stored %d, instance b stored %d (duplicates %d, errors %d)",
		total, a.in.Stats().Stored, st.Stored, st.Duplicates, st.Errors)
	if a.in.Stats().Stored+st.Stored != total {
		t.Errorf("instances stored %d+%d batches, want %d", a.in.Stats().Stored, st.Stored, total)
	}
}
