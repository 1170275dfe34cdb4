package storetest

import (
	"bytes"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/persiv/codex/edge"
)

// AuditStore is a store with the audit log.
type AuditStore interface {
	edge.Store
	edge.AuditStore
}

// RunAudit runs the contract suite of edge.AuditStore.
func RunAudit(t *testing.T, open func(t *testing.T) AuditStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s AuditStore)
	}{
		{"Levels", testAuditLevels},
		{"LevelsInvalid", testAuditLevelsInvalid},
		{"AppendLinksChain", testAuditAppendLinksChain},
		{"AppendRoundTrip", testAuditAppendRoundTrip},
		{"AppendSkipsStored", testAuditAppendSkipsStored},
		{"AppendLargeBatch", testAuditAppendLargeBatch},
		{"AppendInvalid", testAuditAppendInvalid},
		{"AppendConcurrent", testAuditAppendConcurrent},
		{"ListQuery", testAuditListQuery},
		{"ScopedByOrg", testAuditScopedByOrg},
		{"ByID", testAuditByID},
		{"RemoveContent", testAuditRemoveContent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, open(t))
		})
	}
}

// AuditSample is an audit event of org with the given id and time, with
// digests and content when level asks for them.
func AuditSample(orgID, id string, at time.Time, level edge.AuditLevel) edge.AuditEvent {
	e := edge.AuditEvent{
		OrgID: orgID, ID: id, Time: at, Kind: edge.AuditRequest,
		Meta: fmt.Appendf(nil, `{"id":%q,"org_id":%q,"level":%q,"status":200}`, id, orgID, level),
	}
	if level != edge.AuditNone {
		e.RequestDigest = bytes.Repeat([]byte{1}, 32)
		e.ResponseDigest = bytes.Repeat([]byte{2}, 32)
	}
	if level == edge.AuditFull {
		e.Content = []byte("sealed:" + id)
	}
	return e
}

func appendAudit(t *testing.T, s AuditStore, events ...edge.AuditEvent) {
	t.Helper()
	if err := s.AppendAudit(t.Context(), events); err != nil {
		t.Fatalf("AppendAudit: %v", err)
	}
}

func listAudit(t *testing.T, s AuditStore, orgID string) []edge.AuditEvent {
	t.Helper()
	evs, err := s.AuditEvents(t.Context(), orgID, edge.AuditQuery{Limit: 100000})
	if err != nil {
		t.Fatalf("AuditEvents: %v", err)
	}
	return evs
}

// checkChain fails t unless evs are an org's whole chain: seqs 1…n, each
// linked to the one before, each hash its ChainHash.
func checkChain(t *testing.T, evs []edge.AuditEvent) {
	t.Helper()
	prev := edge.GenesisHash()
	for i, e := range evs {
		if e.Seq != int64(i+1) {
			t.Fatalf("event %d has seq %d", i, e.Seq)
		}
		if !bytes.Equal(e.PrevHash, prev) {
			t.Fatalf("event seq %d: prev hash %x, want %x", e.Seq, e.PrevHash, prev)
		}
		if want := edge.ChainHash(e.Seq, prev, e.Meta, e.RequestDigest, e.ResponseDigest); !bytes.Equal(e.Hash, want) {
			t.Fatalf("event seq %d: hash %x, want %x", e.Seq, e.Hash, want)
		}
		prev = e.Hash
	}
}

func testAuditLevels(t *testing.T, s AuditStore) {
	ctx := t.Context()
	o := newOrg(t, s)
	k := newKey(t, s, o.ID)
	start := lastSeq(t, s)
	if got, err := s.AuditLevels(ctx, o.ID); err != nil || len(got) != 0 {
		t.Fatalf("AuditLevels of a new org = %+v, %v; want none", got, err)
	}
	at := now()
	for _, set := range []edge.AuditSetting{
		{OrgID: o.ID, Level: edge.AuditHash, UpdatedAt: at},
		{OrgID: o.ID, KeyID: k.ID, Level: edge.AuditNone, UpdatedAt: at},
		{OrgID: o.ID, Level: edge.AuditFull, UpdatedAt: at.Add(time.Second)},
	} {
		if err := s.SetAuditLevel(ctx, set); err != nil {
			t.Fatalf("SetAuditLevel(%+v): %v", set, err)
		}
	}
	got, err := s.AuditLevels(ctx, o.ID)
	if err != nil {
		t.Fatalf("AuditLevels: %v", err)
	}
	want := []edge.AuditSetting{
		{OrgID: o.ID, Level: edge.AuditFull, UpdatedAt: at.Add(time.Second)},
		{OrgID: o.ID, KeyID: k.ID, Level: edge.AuditNone, UpdatedAt: at},
	}
	if len(got) != len(want) {
		t.Fatalf("AuditLevels = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].OrgID != want[i].OrgID || got[i].KeyID != want[i].KeyID || got[i].Level != want[i].Level || !got[i].UpdatedAt.Equal(want[i].UpdatedAt) {
			t.Errorf("setting %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	// Every change is in the feed, so running edges reload the org.
	n := 0
	for _, c := range allChanges(t, s, start) {
		if c.OrgID == o.ID && c.Kind == "org" && c.Ref == "audit" {
			n++
		}
	}
	if n != 3 {
		t.Errorf("%d change-feed entries for 3 audit level changes", n)
	}
	// Another org sees none of them.
	other := newOrg(t, s)
	if got, err := s.AuditLevels(ctx, other.ID); err != nil || len(got) != 0 {
		t.Errorf("AuditLevels of another org = %+v, %v; want none", got, err)
	}
}

func testAuditLevelsInvalid(t *testing.T, s AuditStore) {
	ctx := t.Context()
	o := newOrg(t, s)
	other := newOrg(t, s)
	k := newKey(t, s, other.ID)
	wantErr(t, "unknown level", s.SetAuditLevel(ctx, edge.AuditSetting{OrgID: o.ID, Level: "most"}), edge.ErrInvalid)
	wantErr(t, "no org", s.SetAuditLevel(ctx, edge.AuditSetting{Level: edge.AuditFull}), edge.ErrInvalid)
	wantErr(t, "unknown org", s.SetAuditLevel(ctx, edge.AuditSetting{OrgID: randomID("org_"), Level: edge.AuditFull}), edge.ErrNotFound)
	wantErr(t, "key of another org", s.SetAuditLevel(ctx, edge.AuditSetting{OrgID: o.ID, KeyID: k.ID, Level: edge.AuditFull}), edge.ErrNotFound)
}

func testAuditAppendLinksChain(t *testing.T, s AuditStore) {
	a, b := newOrg(t, s), newOrg(t, s)
	at := now()
	// One batch mixing two orgs, then another: each org has one chain.
	appendAudit(t, s,
		AuditSample(a.ID, randomID("req_"), at, edge.AuditNone),
		AuditSample(b.ID, randomID("req_"), at, edge.AuditHash),
		AuditSample(a.ID, randomID("req_"), at, edge.AuditFull))
	appendAudit(t, s,
		AuditSample(a.ID, randomID("req_"), at, edge.AuditHash),
		AuditSample(b.ID, randomID("req_"), at, edge.AuditNone))
	for _, o := range []edge.Org{a, b} {
		evs := listAudit(t, s, o.ID)
		checkChain(t, evs)
		if want := map[string]int{a.ID: 3, b.ID: 2}[o.ID]; len(evs) != want {
			t.Errorf("org has %d events, want %d", len(evs), want)
		}
	}
}

func testAuditAppendRoundTrip(t *testing.T, s AuditStore) {
	o := newOrg(t, s)
	at := now()
	in := []edge.AuditEvent{
		AuditSample(o.ID, randomID("req_"), at, edge.AuditFull),
		AuditSample(o.ID, randomID("req_"), at.Add(time.Millisecond), edge.AuditNone),
		{OrgID: o.ID, ID: randomID("adm_"), Time: at, Kind: edge.AuditAdmin, Meta: []byte(`{"action":"keys.create","details":{"name":"ünïcode ✓"}}`)},
	}
	in[0].Content = []byte{0, 1, 2, 255, 0}
	appendAudit(t, s, slices.Clone(in)...)
	got := listAudit(t, s, o.ID)
	if len(got) != len(in) {
		t.Fatalf("%d events, want %d", len(got), len(in))
	}
	for i, e := range got {
		w := in[i]
		if e.OrgID != w.OrgID || e.ID != w.ID || !e.Time.Equal(w.Time) || e.Kind != w.Kind ||
			!bytes.Equal(e.Meta, w.Meta) || !bytes.Equal(e.RequestDigest, w.RequestDigest) ||
			!bytes.Equal(e.ResponseDigest, w.ResponseDigest) || !bytes.Equal(e.Content, w.Content) || e.ContentRemoved != "" {
			t.Errorf("event %d = %+v, want %+v", i, e, w)
		}
		if w.RequestDigest == nil && (e.RequestDigest != nil || e.Content != nil) {
			t.Errorf("event %d: empty digests or content came back as %x, %x", i, e.RequestDigest, e.Content)
		}
	}
	checkChain(t, got)
}

func testAuditAppendSkipsStored(t *testing.T, s AuditStore) {
	o := newOrg(t, s)
	batch := []edge.AuditEvent{
		AuditSample(o.ID, randomID("req_"), now(), edge.AuditHash),
		AuditSample(o.ID, randomID("req_"), now(), edge.AuditHash),
	}
	appendAudit(t, s, slices.Clone(batch)...)
	// The same batch again (a retry after an unanswered commit), and one
	// more event: only the new one is appended.
	appendAudit(t, s, append(slices.Clone(batch), AuditSample(o.ID, randomID("req_"), now(), edge.AuditNone))...)
	evs := listAudit(t, s, o.ID)
	if len(evs) != 3 {
		t.Fatalf("%d events after a replayed batch, want 3", len(evs))
	}
	checkChain(t, evs)
}

// testAuditAppendLargeBatch appends a batch larger than a store writes in
// one statement, with an odd tail and a repeated id: every event once, in
// order, one chain.
func testAuditAppendLargeBatch(t *testing.T, s AuditStore) {
	o := newOrg(t, s)
	var batch []edge.AuditEvent
	for i := range 203 {
		batch = append(batch, AuditSample(o.ID, fmt.Sprintf("req_%s_%03d", o.ID, i), now(), edge.AuditHash))
	}
	batch = append(batch, batch[7])
	appendAudit(t, s, batch...)
	evs := listAudit(t, s, o.ID)
	if len(evs) != 203 {
		t.Fatalf("%d events after a batch of 203 distinct ids, want 203", len(evs))
	}
	for i, e := range evs {
		if want := fmt.Sprintf("req_%s_%03d", o.ID, i); e.ID != want {
			t.Fatalf("event %d is %s, want %s", i, e.ID, want)
		}
	}
	checkChain(t, evs)
}

func testAuditAppendInvalid(t *testing.T, s AuditStore) {
	ctx := t.Context()
	o := newOrg(t, s)
	good := AuditSample(o.ID, randomID("req_"), now(), edge.AuditNone)
	for name, e := range map[string]edge.AuditEvent{
		"no id":       {OrgID: o.ID, Time: now(), Kind: edge.AuditRequest, Meta: []byte(`{}`)},
		"no time":     {OrgID: o.ID, ID: randomID("req_"), Kind: edge.AuditRequest, Meta: []byte(`{}`)},
		"no meta":     {OrgID: o.ID, ID: randomID("req_"), Time: now(), Kind: edge.AuditRequest},
		"bad kind":    {OrgID: o.ID, ID: randomID("req_"), Time: now(), Kind: "other", Meta: []byte(`{}`)},
		"no org":      {ID: randomID("req_"), Time: now(), Kind: edge.AuditRequest, Meta: []byte(`{}`)},
		"unknown org": AuditSample(randomID("org_"), randomID("req_"), now(), edge.AuditNone),
	} {
		err := s.AppendAudit(ctx, []edge.AuditEvent{good, e})
		if err == nil {
			t.Errorf("%s: appended", name)
		}
	}
	// Nothing of the failed batches was kept.
	if evs := listAudit(t, s, o.ID); len(evs) != 0 {
		t.Errorf("%d events after failed batches, want 0", len(evs))
	}
}

// testAuditAppendConcurrent appends for one org from many goroutines at
// once, as several edges do: the chain stays one line with no gap.
func testAuditAppendConcurrent(t *testing.T, s AuditStore) {
	o := newOrg(t, s)
	const writers, each = 8, 10
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for range writers {
		wg.Go(func() {
			for range each {
				if err := s.AppendAudit(t.Context(), []edge.AuditEvent{AuditSample(o.ID, randomID("req_"), now(), edge.AuditHash)}); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("AppendAudit: %v", err)
	}
	evs := listAudit(t, s, o.ID)
	if len(evs) != writers*each {
		t.Fatalf("%d events, want %d", len(evs), writers*each)
	}
	checkChain(t, evs)
}

func testAuditListQuery(t *testing.T, s AuditStore) {
	ctx := t.Context()
	o := newOrg(t, s)
	base := now()
	var batch []edge.AuditEvent
	for i := range 5 {
		batch = append(batch, AuditSample(o.ID, fmt.Sprintf("req_%s_%d", o.ID, i), base.Add(time.Duration(i)*time.Second), edge.AuditNone))
	}
	appendAudit(t, s, batch...)
	for _, tc := range []struct {
		q    edge.AuditQuery
		want []int64
	}{
		{edge.AuditQuery{Limit: 10}, []int64{1, 2, 3, 4, 5}},
		{edge.AuditQuery{Limit: 2}, []int64{1, 2}},
		{edge.AuditQuery{AfterSeq: 3, Limit: 10}, []int64{4, 5}},
		{edge.AuditQuery{Since: base.Add(2 * time.Second), Limit: 10}, []int64{3, 4, 5}},
		{edge.AuditQuery{Since: base.Add(time.Second), AfterSeq: 3, Limit: 1}, []int64{4}},
	} {
		evs, err := s.AuditEvents(ctx, o.ID, tc.q)
		if err != nil {
			t.Fatalf("AuditEvents(%+v): %v", tc.q, err)
		}
		var got []int64
		for _, e := range evs {
			got = append(got, e.Seq)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("AuditEvents(%+v) = seqs %v, want %v", tc.q, got, tc.want)
		}
	}
	_, err := s.AuditEvents(ctx, o.ID, edge.AuditQuery{})
	wantErr(t, "limit 0", err, edge.ErrInvalid)
}

func testAuditScopedByOrg(t *testing.T, s AuditStore) {
	a, b := newOrg(t, s), newOrg(t, s)
	appendAudit(t, s, AuditSample(a.ID, randomID("req_"), now(), edge.AuditFull))
	if evs := listAudit(t, s, b.ID); len(evs) != 0 {
		t.Errorf("org b lists %d events of org a", len(evs))
	}
	if n, err := s.RemoveAuditContent(t.Context(), b.ID, time.Time{}, edge.ContentRemovedShred); err != nil || n != 0 {
		t.Errorf("RemoveAuditContent of org b = %d, %v; want 0", n, err)
	}
	if evs := listAudit(t, s, a.ID); len(evs) != 1 || evs[0].Content == nil {
		t.Errorf("org a's content was touched through org b: %+v", evs)
	}
}

func testAuditByID(t *testing.T, s AuditStore) {
	ctx := t.Context()
	a, b := newOrg(t, s), newOrg(t, s)
	ea := AuditSample(a.ID, randomID("req_"), now(), edge.AuditFull)
	eb := AuditSample(b.ID, randomID("req_"), now(), edge.AuditHash)
	appendAudit(t, s, ea, eb)
	for _, w := range []edge.AuditEvent{ea, eb} {
		got, err := s.AuditEventByID(ctx, w.ID)
		if err != nil {
			t.Fatalf("AuditEventByID(%s): %v", w.ID, err)
		}
		if got.OrgID != w.OrgID || got.Seq != 1 || !bytes.Equal(got.Meta, w.Meta) || !bytes.Equal(got.Content, w.Content) {
			t.Errorf("AuditEventByID(%s) = %+v, want %+v", w.ID, got, w)
		}
	}
	_, err := s.AuditEventByID(ctx, randomID("req_"))
	wantErr(t, "unknown event", err, edge.ErrNotFound)
}

func testAuditRemoveContent(t *testing.T, s AuditStore) {
	ctx := t.Context()
	o := newOrg(t, s)
	base := now()
	old := AuditSample(o.ID, randomID("req_"), base.Add(-48*time.Hour), edge.AuditFull)
	recent := AuditSample(o.ID, randomID("req_"), base, edge.AuditFull)
	appendAudit(t, s, old, recent, AuditSample(o.ID, randomID("req_"), base.Add(-72*time.Hour), edge.AuditHash))
	before := listAudit(t, s, o.ID)

	n, err := s.RemoveAuditContent(ctx, o.ID, base.Add(-24*time.Hour), edge.ContentRemovedRetention)
	if err != nil || n != 1 {
		t.Fatalf("RemoveAuditContent(retention) = %d, %v; want 1", n, err)
	}
	after := listAudit(t, s, o.ID)
	if after[0].Content != nil || after[0].ContentRemoved != edge.ContentRemovedRetention {
		t.Errorf("old event kept content %q, removed %q", after[0].Content, after[0].ContentRemoved)
	}
	if !bytes.Equal(after[1].Content, recent.Content) || after[1].ContentRemoved != "" {
		t.Errorf("recent event lost its content: %+v", after[1])
	}
	if after[2].ContentRemoved != "" {
		t.Errorf("an event without content was marked removed: %q", after[2].ContentRemoved)
	}
	// Metadata, digests and the chain are untouched.
	for i := range before {
		b, a := before[i], after[i]
		if !bytes.Equal(b.Meta, a.Meta) || !bytes.Equal(b.RequestDigest, a.RequestDigest) || !bytes.Equal(b.Hash, a.Hash) {
			t.Errorf("event %d changed beyond its content", i)
		}
	}
	checkChain(t, after)

	if n, err := s.RemoveAuditContent(ctx, o.ID, time.Time{}, edge.ContentRemovedShred); err != nil || n != 1 {
		t.Fatalf("RemoveAuditContent(all) = %d, %v; want 1", n, err)
	}
	if e, err := s.AuditEventByID(ctx, recent.ID); err != nil || e.Content != nil || e.ContentRemoved != edge.ContentRemovedShred {
		t.Errorf("after shred: %+v, %v", e, err)
	}
	// Removing removes nothing twice.
	if n, err := s.RemoveAuditContent(ctx, o.ID, time.Time{}, edge.ContentRemovedShred); err != nil || n != 0 {
		t.Errorf("second RemoveAuditContent = %d, %v; want 0", n, err)
	}
}
