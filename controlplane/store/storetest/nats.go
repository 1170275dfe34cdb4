package storetest

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/persiv/codex/controlplane"
)

// testNATSOrgKeys: an org's key is written once, concurrent writers get
// the first one's bytes, and a deleted key can be added again.
func testNATSOrgKeys(t *testing.T, s controlplane.Store) {
	ctx := t.Context()
	if _, err := s.NATSOrgKey(ctx, "org_a"); !errors.Is(err, controlplane.ErrNotFound) {
		t.Fatalf("unknown key: %v, want ErrNotFound", err)
	}
	results := make([]string, 8)
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() {
			got, err := s.AddNATSOrgKey(context.Background(), "org_a", []byte("writer "+strconv.Itoa(i)))
			if err != nil {
				t.Error(err)
			}
			results[i] = string(got)
		})
	}
	wg.Wait()
	for i, r := range results {
		if r != results[0] || r == "" {
			t.Fatalf("writer %d got %q, writer 0 %q: concurrent writers disagree", i, r, results[0])
		}
	}
	if got, err := s.NATSOrgKey(ctx, "org_a"); err != nil || string(got) != results[0] {
		t.Fatalf("read: %q, %v", got, err)
	}
	if _, err := s.AddNATSOrgKey(ctx, "org_b", []byte("b")); err != nil {
		t.Fatal(err)
	}
	for range 2 { // deleting what is gone is no error
		if err := s.DeleteNATSOrgKey(ctx, "org_a"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.NATSOrgKey(ctx, "org_a"); !errors.Is(err, controlplane.ErrNotFound) {
		t.Fatalf("deleted key: %v, want ErrNotFound", err)
	}
	if got, err := s.NATSOrgKey(ctx, "org_b"); err != nil || string(got) != "b" {
		t.Fatalf("other org's key: %q, %v", got, err)
	}
	if got, err := s.AddNATSOrgKey(ctx, "org_a", []byte("new")); err != nil || string(got) != "new" {
		t.Fatalf("add after delete: %q, %v", got, err)
	}
}

// testNATSAccounts: concurrent read-modify-write updates of an account
// each see the one before, so none is lost; an unchanged or failed
// update keeps the version.
func testNATSAccounts(t *testing.T, s controlplane.Store) {
	ctx := t.Context()
	if _, _, err := s.NATSAccount(ctx, "ACC"); !errors.Is(err, controlplane.ErrNotFound) {
		t.Fatalf("unknown account: %v, want ErrNotFound", err)
	}
	// A failed first update leaves no account.
	boom := errors.New("boom")
	if _, _, err := s.UpdateNATSAccount(ctx, "ACC", func(string, int64) (string, error) { return "", boom }); !errors.Is(err, boom) {
		t.Fatalf("failed update: %v", err)
	}
	if _, _, err := s.NATSAccount(ctx, "ACC"); !errors.Is(err, controlplane.ErrNotFound) {
		t.Fatalf("after a failed update: %v, want ErrNotFound", err)
	}
	const n = 16
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, _, err := s.UpdateNATSAccount(context.Background(), "ACC", func(cur string, _ int64) (string, error) {
				return cur + "w" + strconv.Itoa(i) + ";", nil
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	j, v, err := s.NATSAccount(ctx, "ACC")
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(strings.TrimSuffix(j, ";"), ";")
	slices.Sort(parts)
	if len(parts) != n || v != n || len(slices.Compact(parts)) != n {
		t.Fatalf("after %d concurrent updates: version %d, %q: an update was lost", n, v, j)
	}
	got, gotV, err := s.UpdateNATSAccount(ctx, "ACC", func(cur string, ver int64) (string, error) {
		if cur != j || ver != v {
			t.Errorf("update saw %q@%d, want the stored %q@%d", cur, ver, j, v)
		}
		return cur, nil
	})
	if err != nil || got != j || gotV != v {
		t.Fatalf("unchanged update: %q@%d, %v", got, gotV, err)
	}
	if _, _, err := s.UpdateNATSAccount(ctx, "ACC", func(string, int64) (string, error) { return "lost", boom }); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if got, gotV, err := s.NATSAccount(ctx, "ACC"); err != nil || got != j || gotV != v {
		t.Fatalf("after a failed update: %q@%d, %v", got, gotV, err)
	}
	if _, _, err := s.NATSAccount(ctx, "OTHER"); !errors.Is(err, controlplane.ErrNotFound) {
		t.Fatalf("other account: %v, want ErrNotFound", err)
	}
}
