// Package keyringtest holds the contract every keyring.Store must meet, so
// that the SQLite and Postgres stores run the same checks as the in-memory
// one: call StoreContract from their tests.
package keyringtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/keyring"
)

// StoreContract checks a Store. newStore returns an empty store (and any
// org rows its foreign keys need must accept "org_a", "org_b" and "org_c").
func StoreContract(t *testing.T, newStore func(t *testing.T) keyring.Store) {
	ctx := context.Background()
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	mk := func(t *testing.T, org string, gen int) keyring.WrappedDEK {
		id, err := keyring.NewDEKID()
		if err != nil {
			t.Fatal(err)
		}
		return keyring.WrappedDEK{
			ID: id, OrgID: org, Generation: gen, State: keyring.DEKActive,
			MasterRef: "byok", MasterVersion: fmt.Sprintf("v%d", gen),
			Wrapped: []byte{byte(gen), 0, 1, 2, 255}, CreatedAt: at.Add(time.Duration(gen) * time.Hour),
		}
	}

	t.Run("create and list", func(t *testing.T) {
		s := newStore(t)
		if got, err := s.DEKs(ctx, "org_a"); err != nil || len(got) != 0 {
			t.Fatalf("DEKs of an org without keys = %v, %v", got, err)
		}
		d1, d2, other := mk(t, "org_a", 1), mk(t, "org_a", 2), mk(t, "org_b", 1)
		for _, d := range []keyring.WrappedDEK{d1, d2, other} {
			if err := s.CreateDEK(ctx, d); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.DEKs(ctx, "org_a")
		if err != nil || len(got) != 2 {
			t.Fatalf("DEKs = %v, %v", got, err)
		}
		want1 := d1
		want1.State = keyring.DEKRetired
		for i, want := range []keyring.WrappedDEK{d2, want1} {
			if !sameDEK(got[i], want) {
				t.Errorf("DEKs[%d] = %+v, want %+v", i, got[i], want)
			}
		}
		orgs, err := s.DEKOrgs(ctx)
		if err != nil || len(orgs) != 2 {
			t.Fatalf("DEKOrgs = %v, %v", orgs, err)
		}
	})

	t.Run("generation conflict", func(t *testing.T) {
		s := newStore(t)
		if err := s.CreateDEK(ctx, mk(t, "org_a", 1)); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateDEK(ctx, mk(t, "org_a", 1)); !errors.Is(err, edge.ErrConflict) {
			t.Fatalf("second generation 1 = %v, want edge.ErrConflict", err)
		}
		if err := s.CreateDEK(ctx, mk(t, "org_b", 1)); err != nil {
			t.Fatalf("generation 1 of another org: %v", err)
		}
	})

	t.Run("concurrent creation", func(t *testing.T) {
		s := newStore(t)
		var wg sync.WaitGroup
		errs := make([]error, 8)
		for i := range errs {
			wg.Go(func() { errs[i] = s.CreateDEK(ctx, mk(t, "org_a", 1)) })
		}
		wg.Wait()
		ok := 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, edge.ErrConflict):
				t.Errorf("concurrent create: %v", err)
			}
		}
		if got, _ := s.DEKs(ctx, "org_a"); ok != 1 || len(got) != 1 || got[0].State != keyring.DEKActive {
			t.Fatalf("%d creations succeeded, store holds %+v", ok, got)
		}
	})

	t.Run("update wrapped", func(t *testing.T) {
		s := newStore(t)
		d := mk(t, "org_a", 1)
		if err := s.CreateDEK(ctx, d); err != nil {
			t.Fatal(err)
		}
		w := keyring.Wrap{Ref: "awskms", Version: "arn:aws:kms:eu-west-2:111122223333:key/x", Blob: []byte{9, 8, 7}}
		if err := s.UpdateWrapped(ctx, "org_a", d.ID, w, at.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		got, _ := s.DEKs(ctx, "org_a")
		if len(got) != 1 || got[0].MasterRef != w.Ref || got[0].MasterVersion != w.Version || !bytes.Equal(got[0].Wrapped, w.Blob) ||
			!got[0].RewrappedAt.Equal(at.Add(time.Minute)) || got[0].Generation != 1 || !got[0].CreatedAt.Equal(d.CreatedAt) {
			t.Fatalf("after update: %+v", got)
		}
		if err := s.UpdateWrapped(ctx, "org_b", d.ID, w, at); !errors.Is(err, edge.ErrNotFound) {
			t.Errorf("update through another org = %v, want edge.ErrNotFound", err)
		}
	})

	t.Run("add seals", func(t *testing.T) {
		s := newStore(t)
		d, other := mk(t, "org_a", 1), mk(t, "org_b", 1)
		other.Seals = 7 // as restored by a store that rebuilds itself
		for _, x := range []keyring.WrappedDEK{d, other} {
			if err := s.CreateDEK(ctx, x); err != nil {
				t.Fatal(err)
			}
		}
		if got, err := s.AddSeals(ctx, "org_a", d.ID, 100); err != nil || got != 100 {
			t.Fatalf("AddSeals = %d, %v; want 100", got, err)
		}
		// Concurrent reservations each get their own block.
		const n = 8
		totals := make(chan int64, n)
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				got, err := s.AddSeals(ctx, "org_a", d.ID, 10)
				if err != nil {
					t.Error(err)
				}
				totals <- got
			})
		}
		wg.Wait()
		close(totals)
		seen := map[int64]bool{}
		for v := range totals {
			seen[v] = true
		}
		if len(seen) != n {
			t.Errorf("concurrent AddSeals returned %d distinct totals, want %d: %v", len(seen), n, seen)
		}
		got, _ := s.DEKs(ctx, "org_a")
		if len(got) != 1 || got[0].Seals != 100+n*10 {
			t.Fatalf("after AddSeals: %+v, want Seals %d", got, 100+n*10)
		}
		if got, _ := s.DEKs(ctx, "org_b"); len(got) != 1 || got[0].Seals != 7 {
			t.Fatalf("other org: %+v, want Seals 7", got)
		}
		if _, err := s.AddSeals(ctx, "org_b", d.ID, 1); !errors.Is(err, edge.ErrNotFound) {
			t.Errorf("AddSeals through another org = %v, want edge.ErrNotFound", err)
		}
		if got, _ := s.DEKs(ctx, "org_a"); got[0].Seals != 100+n*10 {
			t.Errorf("AddSeals through another org changed the count: %d", got[0].Seals)
		}
	})

	t.Run("delete", func(t *testing.T) {
		s := newStore(t)
		for _, d := range []keyring.WrappedDEK{mk(t, "org_a", 1), mk(t, "org_a", 2), mk(t, "org_c", 1)} {
			if err := s.CreateDEK(ctx, d); err != nil {
				t.Fatal(err)
			}
		}
		if n, err := s.DeleteDEKs(ctx, "org_a"); err != nil || n != 2 {
			t.Fatalf("DeleteDEKs = %d, %v", n, err)
		}
		if got, _ := s.DEKs(ctx, "org_a"); len(got) != 0 {
			t.Fatalf("after delete: %+v", got)
		}
		if got, _ := s.DEKs(ctx, "org_c"); len(got) != 1 {
			t.Fatalf("other org after delete: %+v", got)
		}
		if n, err := s.DeleteDEKs(ctx, "org_a"); err != nil || n != 0 {
			t.Fatalf("second DeleteDEKs = %d, %v", n, err)
		}
		if orgs, _ := s.DEKOrgs(ctx); len(orgs) != 1 || orgs[0] != "org_c" {
			t.Fatalf("DEKOrgs after delete = %v", orgs)
		}
		// A new generation 1 is allowed after a shred.
		if err := s.CreateDEK(ctx, mk(t, "org_a", 1)); err != nil {
			t.Fatal(err)
		}
	})
}

func sameDEK(a, b keyring.WrappedDEK) bool {
	return a.ID == b.ID && a.OrgID == b.OrgID && a.Generation == b.Generation && a.State == b.State &&
		a.MasterRef == b.MasterRef && a.MasterVersion == b.MasterVersion && bytes.Equal(a.Wrapped, b.Wrapped) &&
		a.CreatedAt.Equal(b.CreatedAt) && a.RewrappedAt.Equal(b.RewrappedAt) && a.Seals == b.Seals
}
