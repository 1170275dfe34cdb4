package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/persiv/codex/edge"
)

// testDeleteOrg: DeleteOrg removes the org and what names it, leaves a
// "key" change without an org for each of its keys, records the deletion,
// and leaves another org alone.
func testDeleteOrg(t *testing.T, s edge.Store) {
	ctx := t.Context()
	a, b := newOrg(t, s), newOrg(t, s)
	ka, kb := newKey(t, s, a.ID), newKey(t, s, b.ID)
	if err := s.InsertRequests(ctx, []edge.RequestRecord{
		SampleRecord(a.ID, ka.ID, randomID("req_"), now()), SampleRecord(b.ID, kb.ID, randomID("req_"), now()),
	}); err != nil {
		t.Fatal(err)
	}
	feed, err := s.Changes(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	var seq int64
	if len(feed) > 0 {
		seq = feed[len(feed)-1].Seq
	}
	d, err := s.DeleteOrg(ctx, edge.OrgDeletion{OrgID: a.ID, Time: now(), Actor: "ops@host", Via: "cli"})
	if err != nil {
		t.Fatal(err)
	}
	if d.Rows["orgs"] != 1 || d.Rows["api_keys"] != 1 || d.Rows["requests"] != 1 {
		t.Errorf("rows removed: %v", d.Rows)
	}
	if _, err := s.Org(ctx, a.ID); !errors.Is(err, edge.ErrNotFound) {
		t.Errorf("Org after DeleteOrg = %v, want ErrNotFound", err)
	}
	if _, err := s.KeyByHash(ctx, ka.Hash); !errors.Is(err, edge.ErrNotFound) {
		t.Errorf("KeyByHash of the deleted org's key = %v, want ErrNotFound", err)
	}
	if recs, err := s.Requests(ctx, b.ID, time.Time{}, 10); err != nil || len(recs) != 1 {
		t.Errorf("the other org's records: %d, %v", len(recs), err)
	}
	if _, err := s.KeyByHash(ctx, kb.Hash); err != nil {
		t.Errorf("the other org's key: %v", err)
	}
	// Other tests may share the store: look only at what names a or ka.
	after, err := s.Changes(ctx, seq)
	var mine []edge.Change
	for _, c := range after {
		if c.OrgID == a.ID || c.Ref == ka.ID {
			mine = append(mine, c)
		}
	}
	// The key's removal, and the destruction of the org's data keys again:
	// the deletion removed the shred's own entry from the feed, and an edge
	// that had not read it must still drop what it holds of the org.
	kinds := map[string]edge.Change{}
	for _, c := range mine {
		kinds[c.Kind] = edge.Change{OrgID: c.OrgID, Kind: c.Kind, Ref: c.Ref}
	}
	if err != nil || len(mine) != 2 || kinds["key"] != (edge.Change{Kind: "key", Ref: ka.ID}) ||
		kinds["dek"] != (edge.Change{OrgID: a.ID, Kind: "dek", Ref: "*"}) {
		t.Errorf("change feed after DeleteOrg: %+v, %v; want a key change naming no org, then the org's data keys destroyed", mine, err)
	}
	if _, err := s.DeleteOrg(ctx, edge.OrgDeletion{OrgID: a.ID}); !errors.Is(err, edge.ErrNotFound) {
		t.Errorf("deleting a deleted org = %v, want ErrNotFound", err)
	}
	dels, err := s.OrgDeletions(ctx)
	var rec []edge.OrgDeletion
	for _, d := range dels {
		if d.OrgID == a.ID {
			rec = append(rec, d)
		}
	}
	if err != nil || len(rec) != 1 || rec[0].Actor != "ops@host" || rec[0].Via != "cli" || rec[0].Rows["api_keys"] != 1 {
		t.Errorf("org deletions: %+v, %v", rec, err)
	}
}
