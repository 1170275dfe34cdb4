package directory_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/persiv/codex/edge/directory"
	"github.com/persiv/codex/edge/memory"
)

func label(m *directory.Memory) string {
	if m == nil {
		return ""
	}
	return m.Label
}

func text(t *testing.T, m *directory.Memory) string {
	t.Helper()
	var s string
	if err := json.Unmarshal(m.System.Quoted(), &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestMemoriesFollowTheFeed: a key carries its org's memories, then its
// own, opened; a set or removal through another process applies at the
// next read of the change feed.
func TestMemoriesFollowTheFeed(t *testing.T) {
	st, d, orgID := setup(t)
	ctx := context.Background()
	svc := memory.Service{Store: st.DB, Keys: st.kr}
	k1, h1 := newKey(t, st, orgID)
	_, h2 := newKey(t, st, orgID)
	resolve := func(h [32]byte) directory.Key {
		t.Helper()
		k, err := d.Resolve(ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	if m := resolve(h1).Memory; m != nil {
		t.Fatalf("memory before any was set: %+v", m)
	}
	set := func(keyID, name, txt string) {
		t.Helper()
		if _, err := svc.Set(ctx, orgID, keyID, name, []byte(txt)); err != nil {
			t.Fatal(err)
		}
		if err := d.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	set("", "style", "Org style.")
	set("", "about", "About us.")
	set(k1.ID, "tone", "Key tone.")
	m1, m2 := resolve(h1).Memory, resolve(h2).Memory
	if label(m1) != "about@1,style@1,tone@1" || text(t, m1) != "About us.\n\nOrg style.\n\nKey tone." || m1.Tokens != 3+3+3 {
		t.Fatalf("key with its own memory: %q %q %d", label(m1), text(t, m1), m1.Tokens)
	}
	if label(m2) != "about@1,style@1" || text(t, m2) != "About us.\n\nOrg style." {
		t.Fatalf("key without: %q %q", label(m2), text(t, m2))
	}
	set("", "style", "Org style, v2.")
	if got := label(resolve(h2).Memory); got != "about@1,style@2" {
		t.Fatalf("after a new version: %q", got)
	}
	if err := svc.Remove(ctx, orgID, "", "about"); err != nil {
		t.Fatal(err)
	}
	if err := svc.Remove(ctx, orgID, "", "style"); err != nil {
		t.Fatal(err)
	}
	if err := d.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := resolve(h2).Memory; got != nil {
		t.Fatalf("after removing the org's memories: %q", label(got))
	}
	if got := label(resolve(h1).Memory); got != "tone@1" {
		t.Fatalf("the key's own after the org's were removed: %q", got)
	}
}
