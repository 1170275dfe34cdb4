package storetest

import (
	"bytes"
	"slices"
	"testing"

	"github.com/persiv/codex/edge"
)

func memory(orgID, keyID, name string, version int64, text string) edge.Memory {
	return edge.Memory{OrgID: orgID, KeyID: keyID, Name: name, Version: version,
		Sealed: []byte("sealed:" + text), Bytes: int64(len(text)), Tokens: int64(len(text) / 4), UpdatedAt: now()}
}

func sameMemory(a, b edge.Memory) bool {
	return a.OrgID == b.OrgID && a.KeyID == b.KeyID && a.Name == b.Name && a.Version == b.Version &&
		bytes.Equal(a.Sealed, b.Sealed) && a.Bytes == b.Bytes && a.Tokens == b.Tokens && a.UpdatedAt.Equal(b.UpdatedAt)
}

func testMemoryVersions(t *testing.T, s edge.Store) {
	ctx := t.Context()
	o := newOrg(t, s)
	put := func(m edge.Memory) error { t.Helper(); return s.PutMemory(ctx, m) }

	wantErr(t, "Memory never set", func() error { _, err := s.Memory(ctx, o.ID, "", "style"); return err }(), edge.ErrNotFound)
	v1 := memory(o.ID, "", "style", 1, "be brief")
	if err := put(v1); err != nil {
		t.Fatalf("PutMemory v1: %v", err)
	}
	if got, err := s.Memory(ctx, o.ID, "", "style"); err != nil || !sameMemory(got, v1) {
		t.Fatalf("Memory = %+v, %v; want %+v", got, err, v1)
	}
	// Versions follow on one by one: a set that did not see the latest
	// version is a conflict.
	wantErr(t, "PutMemory v1 again", put(memory(o.ID, "", "style", 1, "other")), edge.ErrConflict)
	wantErr(t, "PutMemory v3 after v1", put(memory(o.ID, "", "style", 3, "other")), edge.ErrConflict)
	v2 := memory(o.ID, "", "style", 2, "be very brief")
	if err := put(v2); err != nil {
		t.Fatalf("PutMemory v2: %v", err)
	}
	got, err := s.Memories(ctx, o.ID)
	if err != nil || len(got) != 1 || !sameMemory(got[0], v2) {
		t.Fatalf("Memories = %+v, %v; want v2 only", got, err)
	}

	// A removed memory keeps its version; the next set follows on.
	if err := s.RemoveMemory(ctx, o.ID, "", "style", now()); err != nil {
		t.Fatalf("RemoveMemory: %v", err)
	}
	wantErr(t, "RemoveMemory twice", s.RemoveMemory(ctx, o.ID, "", "style", now()), edge.ErrNotFound)
	wantErr(t, "RemoveMemory never set", s.RemoveMemory(ctx, o.ID, "", "other", now()), edge.ErrNotFound)
	if got, err := s.Memories(ctx, o.ID); err != nil || len(got) != 0 {
		t.Fatalf("Memories after removal = %+v, %v", got, err)
	}
	rm, err := s.Memory(ctx, o.ID, "", "style")
	if err != nil || rm.Sealed != nil || rm.Version != 2 {
		t.Fatalf("removed Memory = %+v, %v; want version 2 without text", rm, err)
	}
	wantErr(t, "PutMemory v1 after removal", put(memory(o.ID, "", "style", 1, "again")), edge.ErrConflict)
	if err := put(memory(o.ID, "", "style", 3, "again")); err != nil {
		t.Fatalf("PutMemory v3 after removal: %v", err)
	}
}

func testMemoryKeysAndOrder(t *testing.T, s edge.Store) {
	ctx := t.Context()
	o := newOrg(t, s)
	k := newKey(t, s, o.ID)
	other := newOrg(t, s)
	otherKey := newKey(t, s, other.ID)
	want := []edge.Memory{
		memory(o.ID, "", "a", 1, "org a"),
		memory(o.ID, "", "b", 1, "org b"),
		memory(o.ID, k.ID, "a", 1, "key a"),
	}
	for _, i := range []int{2, 1, 0} {
		if err := s.PutMemory(ctx, want[i]); err != nil {
			t.Fatalf("PutMemory %+v: %v", want[i], err)
		}
	}
	got, err := s.Memories(ctx, o.ID)
	if err != nil || !slices.EqualFunc(got, want, sameMemory) {
		t.Fatalf("Memories = %+v, %v; want the org's by name, then the key's", got, err)
	}
	// A key of another org, or no key at all, is not found; a memory of an
	// unknown org neither.
	wantErr(t, "PutMemory for another org's key", s.PutMemory(ctx, memory(o.ID, otherKey.ID, "a", 1, "x")), edge.ErrNotFound)
	wantErr(t, "PutMemory for an unknown key", s.PutMemory(ctx, memory(o.ID, randomID("key_"), "a", 1, "x")), edge.ErrNotFound)
	wantErr(t, "PutMemory for an unknown org", s.PutMemory(ctx, memory(randomID("org_"), "", "a", 1, "x")), edge.ErrNotFound)
	for _, bad := range []edge.Memory{
		memory(o.ID, "", "", 1, "x"),
		memory(o.ID, "", "a b", 1, "x"),
		memory(o.ID, "", "a@1", 1, "x"),
		memory(o.ID, "", "a", 0, "x"),
		{OrgID: o.ID, Name: "nosealed", Version: 1},
	} {
		wantErr(t, "PutMemory "+bad.Name, s.PutMemory(ctx, bad), edge.ErrInvalid)
	}

	// Every read and write is scoped by org.
	if got, err := s.Memories(ctx, other.ID); err != nil || len(got) != 0 {
		t.Fatalf("another org's Memories = %+v, %v", got, err)
	}
	wantErr(t, "Memory through another org", func() error { _, err := s.Memory(ctx, other.ID, "", "a"); return err }(), edge.ErrNotFound)
	wantErr(t, "Memory of a key through another org", func() error { _, err := s.Memory(ctx, other.ID, k.ID, "a"); return err }(), edge.ErrNotFound)
	wantErr(t, "RemoveMemory through another org", s.RemoveMemory(ctx, other.ID, "", "a", now()), edge.ErrNotFound)
	if got, _ := s.Memories(ctx, o.ID); len(got) != 3 {
		t.Fatalf("after another org's attempts: %+v", got)
	}
}

func testMemoryChanges(t *testing.T, s edge.Store) {
	ctx := t.Context()
	o := newOrg(t, s)
	start := lastSeq(t, s)
	if err := s.PutMemory(ctx, memory(o.ID, "", "style", 1, "x")); err != nil {
		t.Fatal(err)
	}
	// A refused set records nothing.
	if err := s.PutMemory(ctx, memory(o.ID, "", "style", 1, "x")); err == nil {
		t.Fatal("conflicting PutMemory succeeded")
	}
	if err := s.RemoveMemory(ctx, o.ID, "", "style", now()); err != nil {
		t.Fatal(err)
	}
	var got []edge.Change
	for _, c := range allChanges(t, s, start) {
		if c.OrgID == o.ID {
			c.Seq = 0
			got = append(got, c)
		}
	}
	want := []edge.Change{{OrgID: o.ID, Kind: "memory", Ref: "style"}, {OrgID: o.ID, Kind: "memory", Ref: "style"}}
	if !slices.Equal(got, want) {
		t.Fatalf("changes = %+v, want %+v", got, want)
	}
}
