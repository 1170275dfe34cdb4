// Package telemetry is the edge's side of the hybrid link (DESIGN §6): it
// aggregates request metadata into per-window usage rows, and, only while
// the customer has switched sharing on, publishes them as wire.UsageBatch
// messages to the control plane over NATS JetStream. Batches that cannot be
// sent wait in a bounded on-disk spool; every batch that leaves is first
// written to an append-only egress ledger the customer can audit.
//
// Nothing in this package reads prompt or response content: its input is
// edge.RequestRecord, which carries none, and its output is wire.UsageBatch,
// which cannot carry any.
package telemetry

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/queue"
	"github.com/persiv/codex/shared/wire"
)

// Labeler turns the edge's own org and key ids into the labels a batch
// carries. It is called only from the aggregator's goroutine.
type Labeler interface {
	Workspace(orgID string) string
	KeyRef(orgID, keyID string) string
}

// Pseudonyms labels orgs and keys with HMAC-SHA256 pseudonyms under a
// per-edge secret: stable, so the dashboard can group by them, but not
// reversible without the secret, which never leaves the edge.
type Pseudonyms struct{ Secret []byte }

func (p Pseudonyms) mac(kind, id string) string {
	m := hmac.New(sha256.New, p.Secret)
	m.Write([]byte(kind))
	m.Write([]byte{0})
	m.Write([]byte(id))
	return hex.EncodeToString(m.Sum(nil)[:12])
}

// Workspace implements Labeler.
func (p Pseudonyms) Workspace(orgID string) string { return "ws-" + p.mac("workspace", orgID) }

// KeyRef implements Labeler.
func (p Pseudonyms) KeyRef(orgID, keyID string) string {
	if keyID == "" {
		return "none"
	}
	return "key-" + p.mac("key", orgID+"\x00"+keyID)
}

// Names labels orgs and keys with their names (sanitized to the wire's
// label charset), for customers who opt into names. Lookups are cached.
type Names struct {
	OrgName func(ctx context.Context, orgID string) (string, error)
	KeyName func(ctx context.Context, keyID string) (string, error)
	cache   map[string]string
}

func (n *Names) lookup(kind, id string, f func(context.Context, string) (string, error)) string {
	if n.cache == nil || len(n.cache) > 10000 {
		n.cache = make(map[string]string)
	}
	if v, ok := n.cache[kind+id]; ok {
		return v
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	name, err := f(ctx, id)
	v := Label(name)
	if err != nil || v == "" {
		v = Label(id) // fall back to the id, which is no secret either
	} else {
		n.cache[kind+id] = v
	}
	return v
}

// Workspace implements Labeler.
func (n *Names) Workspace(orgID string) string { return n.lookup("o", orgID, n.OrgName) }

// KeyRef implements Labeler.
func (n *Names) KeyRef(_, keyID string) string {
	if keyID == "" {
		return "none"
	}
	return n.lookup("k", keyID, n.KeyName)
}

// Label maps s onto wire.LabelChars: disallowed bytes become '-', the
// result is cut to the maximum length; "" when nothing usable is left.
func Label(s string) string {
	b := []byte(s)
	if len(b) > wire.LabelChars.MaxLen {
		b = b[:wire.LabelChars.MaxLen]
	}
	for i, c := range b {
		if !wire.LabelChars.Valid(string([]byte{'a', c})) {
			b[i] = '-'
		}
	}
	for len(b) > 0 && !wire.LabelChars.Valid(string(b[:1])) {
		b = b[1:]
	}
	return string(b)
}

// Aggregator sums request records into usage rows per window, off the
// request path: Record only appends to a bounded queue.
type Aggregator struct {
	// Minimize is applied to every closed window; set before Run.
	Minimize Minimize

	q        *queue.Queue[edge.RequestRecord]
	on       atomic.Bool
	accepted atomic.Int64
	dropped  atomic.Int64
	skipped  atomic.Int64
	flush    chan chan struct{}
}

// NewAggregator returns an aggregator whose queue holds queue records.
func NewAggregator(size int) *Aggregator {
	if size <= 0 {
		size = DefaultQueue
	}
	return &Aggregator{q: queue.New[edge.RequestRecord](size, drainBatch), flush: make(chan chan struct{})}
}

// SetOn starts or stops accepting records. While off Record does nothing,
// so no usage is gathered while sharing is off.
func (a *Aggregator) SetOn(on bool) { a.on.Store(on) }

// Record queues rec for aggregation without blocking; a full queue drops
// it and counts the drop. It reports whether rec was queued.
func (a *Aggregator) Record(rec edge.RequestRecord) bool {
	if !a.on.Load() {
		return false
	}
	if a.q.Push(rec) {
		a.accepted.Add(1)
		return true
	}
	a.dropped.Add(1)
	return false
}

// AggregatorStats are the aggregator's counters.
type AggregatorStats struct {
	Accepted, Dropped, Skipped int64
	Depth, Capacity            int
}

// Stats returns the counters.
func (a *Aggregator) Stats() AggregatorStats {
	return AggregatorStats{Accepted: a.accepted.Load(), Dropped: a.dropped.Load(), Skipped: a.skipped.Load(), Depth: a.q.Len(), Capacity: a.q.Cap()}
}

// Flush closes the current window now (after the records queued so far)
// and waits until it was emitted. For tests and shutdown.
func (a *Aggregator) Flush(ctx context.Context) {
	// Buffered: a caller that stopped waiting must not leave the
	// aggregator blocked on telling it the flush is done.
	done := make(chan struct{}, 1)
	select {
	case a.flush <- done:
	case <-ctx.Done():
		return
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// drainBatch and drainEvery pace the aggregator: it sums queued records
// once drainBatch of them wait, and at least every drainEvery.
const (
	drainBatch = 512
	drainEvery = 100 * time.Millisecond
)

// Window is one closed window's rows, the memories injected into its
// requests and the audit records written for them.
type Window struct {
	Start, End time.Time
	Rows       []wire.UsageRow
	Memories   []wire.MemoryUse
	Audit      []wire.AuditCount
}

// MaxMemoryUses bounds the memory uses of a window: past it, the uses of
// the fewest requests are folded into one wire.Other use, so a window's
// batch stays far below wire.MaxBatchBytes.
const MaxMemoryUses = 1000

type memKey struct {
	ws, key, name string
	version       int64
}

type auditKey struct{ ws, level string }

// sums are the open window's aggregates.
type sums struct {
	rows  map[wire.RowKey]*wire.UsageRow
	mems  map[memKey]*wire.MemoryUse
	audit map[auditKey]*wire.AuditCount
}

func newSums() *sums {
	return &sums{rows: map[wire.RowKey]*wire.UsageRow{}, mems: map[memKey]*wire.MemoryUse{}, audit: map[auditKey]*wire.AuditCount{}}
}

// close returns the window's aggregates and starts the next window.
func (s *sums) close(w *Window) {
	w.Rows = make([]wire.UsageRow, 0, len(s.rows))
	for _, r := range s.rows {
		w.Rows = append(w.Rows, *r)
	}
	for _, m := range s.mems {
		w.Memories = append(w.Memories, *m)
	}
	for _, a := range s.audit {
		w.Audit = append(w.Audit, *a)
	}
	clear(s.rows)
	clear(s.mems)
	clear(s.audit)
}

// Run aggregates until ctx ends, calling emit with each closed window
// after Minimize. A window without rows is emitted only when none was
// emitted for Minimize.Heartbeat: it tells the control plane the edge is
// alive and sharing, and carries no usage. On return the last partial
// window is emitted (if it has rows or a heartbeat is due).
func (a *Aggregator) Run(ctx context.Context, window time.Duration, labeler Labeler, emit func(Window)) {
	sums := newSums()
	labels := &labelCache{l: labeler}
	start := time.Now().UTC()
	tick := time.NewTicker(window)
	defer tick.Stop()
	var lastEmit time.Time // of a window, with or without rows
	closeWindow := func() {
		end := time.Now().UTC()
		if !end.After(start) {
			end = start.Add(time.Microsecond)
		}
		if end.Sub(start) > wire.MaxWindow {
			// A stalled process: the wire bounds a window's length.
			start = end.Add(-wire.MaxWindow)
		}
		w := Window{Start: start, End: end}
		sums.close(&w)
		start = end
		w.Rows = a.Minimize.Apply(w.Rows)
		w.Memories = a.Minimize.ApplyMemories(w.Memories)
		w.Audit = a.Minimize.ApplyAudit(w.Audit)
		if len(w.Rows) == 0 && !lastEmit.IsZero() && end.Sub(lastEmit) < a.Minimize.Heartbeat {
			return // nothing happened, and the last heartbeat is recent
		}
		lastEmit = end
		if !a.on.Load() {
			// Not sent (sharing is off): the first window once it is
			// switched on tells the control plane at once.
			lastEmit = time.Time{}
		}
		emit(w)
	}
	drain := func() {
		recs := a.q.Take()
		for i := range recs {
			a.add(sums, labels, &recs[i])
		}
		a.q.Recycle(recs)
	}
	// Records are summed every drainEvery, or as soon as a batch of them
	// waits, rather than one wake-up per request.
	every := time.NewTicker(drainEvery)
	defer every.Stop()
	for {
		select {
		case <-a.q.Ready():
			drain()
		case <-every.C:
			drain()
		case <-tick.C:
			drain()
			closeWindow()
			labels.reset() // picks up renamed orgs and keys once a window
		case done := <-a.flush:
			drain()
			closeWindow()
			done <- struct{}{}
		case <-ctx.Done():
			drain()
			closeWindow()
			return
		}
	}
}

// DefaultHeartbeat is how often, at most, a window without usage is sent
// (CODEX_TELEMETRY_HEARTBEAT).
const DefaultHeartbeat = 15 * time.Minute

// Minimize are the metadata minimization settings (seed §04).
type Minimize struct {
	// Dimensions are the row dimensions sent (of wire.Dimensions); a
	// withheld one carries wire.Other. Nil: all of them.
	Dimensions []string
	// MinCount: rows of fewer requests are folded into one wire.Other
	// row per cache status and status class (memory uses and audit
	// counts alike: ApplyMemories, ApplyAudit). 0 or 1: none are.
	MinCount int64
	// Heartbeat: windows without usage are sent at most this often.
	Heartbeat time.Duration
}

// Settings are m as the wire carries them.
func (m Minimize) Settings() *wire.Settings {
	dims := m.Dimensions
	if dims == nil {
		dims = wire.Dimensions
	}
	return &wire.Settings{Dimensions: append([]string{}, dims...), MinCount: max(m.MinCount, 0), HeartbeatS: int64(m.Heartbeat / time.Second)}
}

// Apply withholds the dimensions not sent and folds small rows, merging
// the rows that become alike.
func (m Minimize) Apply(rows []wire.UsageRow) []wire.UsageRow {
	if m.Dimensions == nil && m.MinCount <= 1 {
		return rows
	}
	keep := func(d string) bool { return m.Dimensions == nil || slices.Contains(m.Dimensions, d) }
	merged := make(map[wire.RowKey]*wire.UsageRow, len(rows))
	var order []wire.RowKey
	put := func(r wire.UsageRow) {
		k := r.Key()
		if have := merged[k]; have != nil {
			mergeRow(have, &r)
			return
		}
		merged[k] = &r
		order = append(order, k)
	}
	for _, r := range rows {
		if !keep(wire.DimWorkspace) {
			r.Workspace = wire.Other
		}
		if !keep(wire.DimProvider) {
			r.Provider = wire.Other
		}
		if !keep(wire.DimModel) {
			r.Model = wire.Other
		}
		if !keep(wire.DimKeyRef) {
			r.KeyRef = wire.Other
		}
		put(r)
	}
	out := make([]wire.UsageRow, 0, len(order))
	var small []wire.UsageRow
	for _, k := range order {
		r := merged[k]
		if r.Requests < m.MinCount {
			small = append(small, *r)
			continue
		}
		out = append(out, *r)
	}
	if len(small) == 0 {
		return out
	}
	// Folded rows join the Other row of their cache status and class,
	// which may already exist (all dimensions withheld).
	clear(merged)
	for i := range out {
		merged[out[i].Key()] = &out[i]
	}
	var extra []wire.UsageRow
	for _, r := range small {
		r.Workspace, r.Provider, r.Model, r.KeyRef = wire.Other, wire.Other, wire.Other, wire.Other
		if have := merged[r.Key()]; have != nil {
			mergeRow(have, &r)
			continue
		}
		found := false
		for i := range extra {
			if extra[i].Key() == r.Key() {
				mergeRow(&extra[i], &r)
				found = true
				break
			}
		}
		if !found {
			extra = append(extra, r)
		}
	}
	return append(out, extra...)
}

// mergeRow adds r's counts to into.
func mergeRow(into, r *wire.UsageRow) {
	into.Requests += r.Requests
	for _, p := range [][2]*wire.Tokens{{&into.Input, &r.Input}, {&into.CachedInput, &r.CachedInput}, {&into.CacheWrite, &r.CacheWrite}, {&into.Output, &r.Output}, {&into.Reasoning, &r.Reasoning}} {
		p[0].Sum += p[1].Sum
		p[0].Unknown += p[1].Unknown
	}
	into.CostNanoUSD += r.CostNanoUSD
	into.CostUnknown += r.CostUnknown
	into.SavedNanoUSD += r.SavedNanoUSD
	for i := range into.LatencyMS {
		into.LatencyMS[i] += r.LatencyMS[i]
	}
}

// ApplyMemories withholds what the dimensions say (workspace, key_ref,
// memory: name Other, version 0), folds uses of fewer than MinCount
// requests into one Other use, and keeps at most MaxMemoryUses, folding
// those of the fewest requests.
func (m Minimize) ApplyMemories(ms []wire.MemoryUse) []wire.MemoryUse {
	keep := func(d string) bool { return m.Dimensions == nil || slices.Contains(m.Dimensions, d) }
	other := wire.MemoryUse{Workspace: wire.Other, KeyRef: wire.Other, Name: wire.Other}
	merged := make(map[memKey]*wire.MemoryUse, len(ms))
	var out []wire.MemoryUse
	var folded *wire.MemoryUse
	fold := func(u wire.MemoryUse) {
		if folded == nil {
			f := other
			folded = &f
		}
		folded.Requests += u.Requests
		folded.Tokens += u.Tokens
		folded.Estimated += u.Estimated
	}
	for _, u := range ms {
		if !keep(wire.DimWorkspace) {
			u.Workspace = wire.Other
		}
		if !keep(wire.DimKeyRef) {
			u.KeyRef = wire.Other
		}
		if !keep(wire.DimMemory) {
			u.Name, u.Version = wire.Other, 0
		}
		k := memKey{u.Workspace, u.KeyRef, u.Name, u.Version}
		if have := merged[k]; have != nil {
			have.Requests += u.Requests
			have.Tokens += u.Tokens
			have.Estimated += u.Estimated
			continue
		}
		merged[k] = &u
	}
	for _, u := range merged {
		out = append(out, *u)
	}
	// Most requests first, so that the cap folds the smallest.
	slices.SortFunc(out, func(a, b wire.MemoryUse) int {
		return cmp.Or(cmp.Compare(b.Requests, a.Requests), strings.Compare(a.Workspace, b.Workspace),
			strings.Compare(a.KeyRef, b.KeyRef), strings.Compare(a.Name, b.Name), cmp.Compare(a.Version, b.Version))
	})
	kept := out[:0]
	for _, u := range out {
		isOther := u.Workspace == other.Workspace && u.KeyRef == other.KeyRef && u.Name == other.Name && u.Version == 0
		if isOther || u.Requests < m.MinCount || len(kept) >= MaxMemoryUses-1 {
			fold(u)
			continue
		}
		kept = append(kept, u)
	}
	if folded != nil {
		kept = append(kept, *folded)
	}
	return kept
}

// ApplyAudit withholds the workspace if the dimensions say so and folds
// counts of fewer than MinCount records into one Other count per level.
func (m Minimize) ApplyAudit(as []wire.AuditCount) []wire.AuditCount {
	keepWS := m.Dimensions == nil || slices.Contains(m.Dimensions, wire.DimWorkspace)
	merged := make(map[auditKey]*wire.AuditCount, len(as))
	var order []auditKey
	put := func(a wire.AuditCount) {
		k := auditKey{a.Workspace, a.Level}
		if have := merged[k]; have != nil {
			have.Records += a.Records
			return
		}
		merged[k] = &a
		order = append(order, k)
	}
	for _, a := range as {
		if !keepWS {
			a.Workspace = wire.Other
		}
		put(a)
	}
	out := make([]wire.AuditCount, 0, len(order))
	var small []wire.AuditCount
	for _, k := range order {
		if a := merged[k]; a.Records < m.MinCount && a.Workspace != wire.Other {
			small = append(small, *a)
		} else {
			out = append(out, *a)
		}
	}
	if len(small) == 0 {
		return out
	}
	clear(merged)
	order = order[:0]
	for _, a := range out {
		put(a)
	}
	for _, a := range small {
		a.Workspace = wire.Other
		put(a)
	}
	out = out[:0]
	for _, k := range order {
		out = append(out, *merged[k])
	}
	return out
}

// labelCache remembers labels, so that the hot loop computes an HMAC
// once per org and key rather than once per request.
type labelCache struct {
	l    Labeler
	ws   map[string]string
	keys map[[2]string]string
}

func (c *labelCache) reset() { c.ws, c.keys = nil, nil }

func (c *labelCache) Workspace(orgID string) string {
	if v, ok := c.ws[orgID]; ok {
		return v
	}
	if c.ws == nil || len(c.ws) > 10000 {
		c.ws = make(map[string]string)
	}
	v := c.l.Workspace(orgID)
	c.ws[orgID] = v
	return v
}

func (c *labelCache) KeyRef(orgID, keyID string) string {
	k := [2]string{orgID, keyID}
	if v, ok := c.keys[k]; ok {
		return v
	}
	if c.keys == nil || len(c.keys) > 10000 {
		c.keys = make(map[[2]string]string)
	}
	v := c.l.KeyRef(orgID, keyID)
	c.keys[k] = v
	return v
}

// add folds one record into its row, its memories and its audit count.
func (a *Aggregator) add(s *sums, labels *labelCache, rec *edge.RequestRecord) {
	if rec.OrgID == "" {
		a.skipped.Add(1) // not attributable to a workspace
		return
	}
	k := wire.RowKey{
		Workspace:   labels.Workspace(rec.OrgID),
		Provider:    string(rec.Provider),
		Model:       rec.Model,
		KeyRef:      labels.KeyRef(rec.OrgID, rec.KeyID),
		CacheStatus: wire.CacheStatus(rec.Cache),
		StatusClass: wire.ClassOf(rec.Status),
	}
	if !wire.ProviderChars.Valid(k.Provider) {
		k.Provider = "unknown"
	}
	if !wire.ModelChars.Valid(k.Model) {
		k.Model = "unknown"
	}
	switch k.CacheStatus {
	case wire.CacheHit, wire.CacheMiss:
	default:
		k.CacheStatus = wire.CacheBypass
	}
	r := s.rows[k]
	if r == nil {
		r = &wire.UsageRow{Workspace: k.Workspace, Provider: k.Provider, Model: k.Model, KeyRef: k.KeyRef, CacheStatus: k.CacheStatus, StatusClass: k.StatusClass}
		s.rows[k] = r
	}
	for _, m := range rec.Memories {
		if !wire.MemoryNameChars.Valid(m.Name) || m.Version < 1 {
			continue // not a stored memory's name: never sent
		}
		ref := "none" // the workspace's own memory
		if m.KeyID != "" {
			ref = labels.KeyRef(rec.OrgID, m.KeyID)
		}
		mk := memKey{k.Workspace, ref, m.Name, m.Version}
		u := s.mems[mk]
		if u == nil {
			u = &wire.MemoryUse{Workspace: mk.ws, KeyRef: mk.key, Name: m.Name, Version: m.Version}
			s.mems[mk] = u
		}
		u.Requests++
		u.Tokens += max(m.Tokens, 0)
		u.Estimated++ // the provider reports no memory's share of a request
	}
	if rec.Audit.Valid() {
		ak := auditKey{k.Workspace, string(rec.Audit)}
		c := s.audit[ak]
		if c == nil {
			c = &wire.AuditCount{Workspace: ak.ws, Level: ak.level}
			s.audit[ak] = c
		}
		c.Records++
	}
	r.Requests++
	addTokens(&r.Input, rec.Usage.Input)
	addTokens(&r.CachedInput, rec.Usage.CachedInput)
	addTokens(&r.CacheWrite, rec.Usage.CacheWrite)
	addTokens(&r.Output, rec.Usage.Output)
	addTokens(&r.Reasoning, rec.Usage.Reasoning)
	if rec.CostKnown {
		r.CostNanoUSD += max(rec.CostNanoUSD, 0)
	} else {
		r.CostUnknown++
	}
	r.SavedNanoUSD += max(rec.SavedNanoUSD, 0)
	switch rec.Refused {
	case edge.RefusedRateLimit:
		r.Limited++
	case edge.RefusedBudget:
		r.BudgetRefused++
	}
	r.LatencyMS[wire.LatencyBucket(rec.Latency)]++
}

func addTokens(t *wire.Tokens, c edge.Count) {
	if c.Known {
		t.Sum += max(c.N, 0)
	} else {
		t.Unknown++
	}
}

// Fanout is a proxy sink that hands every record to each of its sinks.
// It reports whether the first (the metadata writer) took it.
type Fanout []interface{ Record(edge.RequestRecord) bool }

// Record implements proxy.Sink.
func (f Fanout) Record(rec edge.RequestRecord) bool {
	ok := true
	for i, s := range f {
		if took := s.Record(rec); i == 0 {
			ok = took
		}
	}
	return ok
}
