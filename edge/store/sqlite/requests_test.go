package sqlite

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/store/storetest"
)

func TestChunkSize(t *testing.T) {
	for _, tc := range []struct{ pending, want int }{
		{1, 1}, {2, 2}, {3, 2}, {63, 32}, {64, 64}, {65, 64}, {1000, 64},
	} {
		if got := chunkSize(tc.pending); got != tc.want {
			t.Errorf("chunkSize(%d) = %d, want %d", tc.pending, got, tc.want)
		}
	}
}

// TestInsertRequestsChunks checks that every batch size, whole chunks and
// tails of every smaller statement, stores exactly its records.
func TestInsertRequestsChunks(t *testing.T) {
	db := mustOpen(t, t.TempDir())
	ctx := t.Context()
	if err := db.CreateOrg(ctx, edge.Org{ID: "o", Name: "o"}); err != nil {
		t.Fatal(err)
	}
	base := time.Unix(1_700_000_000, 0).UTC()
	total := 0
	for _, size := range []int{1, 2, 3, 63, 64, 65, 127, 128, 129, 200} {
		batch := make([]edge.RequestRecord, size)
		for i := range batch {
			batch[i] = storetest.SampleRecord("o", "k", fmt.Sprintf("req_%d_%d", size, i), base.Add(time.Duration(total+i)))
			batch[i].Status = size*1000 + i // tells the rows apart
		}
		if err := db.InsertRequests(ctx, batch); err != nil {
			t.Fatalf("InsertRequests(%d records): %v", size, err)
		}
		got, err := db.Requests(ctx, "o", base.Add(time.Duration(total)), size+1)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != size {
			t.Fatalf("after %d records: Requests returned %d", size, len(got))
		}
		for i := range got {
			if got[i].ID != batch[i].ID || got[i].Status != batch[i].Status || !got[i].Time.Equal(batch[i].Time) {
				t.Fatalf("batch of %d, record %d = %+v, want %+v", size, i, got[i], batch[i])
			}
		}
		total += size
	}
}

// TestInsertRequestsAtomicAcrossStatements checks that a batch long
// enough to go in several INSERT statements is stored whole or not at
// all, whichever statement fails, and that the error names the record
// that failed, as it did when every row had its own statement.
func TestInsertRequestsAtomicAcrossStatements(t *testing.T) {
	const size = 3*maxInsertRows + 13 // three full statements and a tail of 8, 4 and 1
	for _, tc := range []struct {
		name string
		bad  int // index of the failing record
		kind string
	}{
		{"first row taken id", 0, "taken"},
		{"end of first statement taken id", maxInsertRows - 1, "taken"},
		{"start of second statement taken id", maxInsertRows, "taken"},
		{"third statement unknown org", 2*maxInsertRows + 5, "org"},
		{"tail duplicate within batch", size - 3, "dup"},
		{"last row unknown org", size - 1, "org"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := mustOpen(t, t.TempDir())
			ctx := t.Context()
			if err := db.CreateOrg(ctx, edge.Org{ID: "o", Name: "o"}); err != nil {
				t.Fatal(err)
			}
			if err := db.CreateKey(ctx, edge.APIKey{ID: "k", OrgID: "o", Hash: sha256.Sum256([]byte("k"))}); err != nil {
				t.Fatal(err)
			}
			base := time.Unix(1_700_000_000, 0).UTC()
			taken := storetest.SampleRecord("o", "k", "req_taken", base)
			if err := db.InsertRequests(ctx, []edge.RequestRecord{taken}); err != nil {
				t.Fatal(err)
			}
			batch := make([]edge.RequestRecord, size)
			for i := range batch {
				batch[i] = storetest.SampleRecord("o", "k", fmt.Sprintf("req_%03d", i), base.Add(time.Duration(i+1)))
			}
			switch tc.kind {
			case "taken":
				batch[tc.bad].ID = taken.ID
			case "dup":
				batch[tc.bad].ID = batch[tc.bad-maxInsertRows-1].ID
			case "org":
				batch[tc.bad].OrgID = "missing"
			}
			err := db.InsertRequests(ctx, batch)
			wantErr := fmt.Sprintf("record %q", batch[tc.bad].ID)
			if !isConflict(err) || !strings.Contains(err.Error(), wantErr) {
				t.Fatalf("InsertRequests = %v, want ErrConflict naming %s", err, wantErr)
			}
			got, err := db.Requests(ctx, "o", time.Time{}, 2*size)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || got[0].ID != taken.ID {
				t.Errorf("after the refused batch the store holds %d records, want only %s", len(got), taken.ID)
			}
			// The store still takes the batch once the bad record is gone.
			batch = append(batch[:tc.bad], batch[tc.bad+1:]...)
			if err := db.InsertRequests(ctx, batch); err != nil {
				t.Fatalf("InsertRequests without the bad record: %v", err)
			}
			if got, err := db.Requests(ctx, "o", time.Time{}, 2*size); err != nil || len(got) != size {
				t.Errorf("after the good batch: %d records, %v; want %d", len(got), err, size)
			}
		})
	}
}

func isConflict(err error) bool { return err != nil && errors.Is(err, edge.ErrConflict) }
