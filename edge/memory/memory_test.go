package memory_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/keyring"
	"github.com/persiv/codex/edge/keyring/local"
	"github.com/persiv/codex/edge/memory"
	"github.com/persiv/codex/edge/store/sqlite"
)

func setup(t *testing.T) (memory.Service, *sqlite.DB) {
	t.Helper()
	db, err := sqlite.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	master, _, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	kr, err := keyring.New(keyring.Options{Store: db, Master: master})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.CreateOrg(context.Background(), edge.Org{ID: "org_a", Name: "a"}); err != nil {
		t.Fatal(err)
	}
	return memory.Service{Store: db, Keys: kr}, db
}

func TestSetShowRemove(t *testing.T) {
	svc, db := setup(t)
	ctx := context.Background()
	for i, text := range []string{"first", "second"} {
		info, err := svc.Set(ctx, "org_a", "", "style", []byte(text))
		if err != nil || info.Version != int64(i+1) || info.Bytes != int64(len(text)) {
			t.Fatalf("Set %q = %+v, %v", text, info, err)
		}
	}
	text, info, err := svc.Show(ctx, "org_a", "", "style")
	if err != nil || string(text) != "second" || info.Version != 2 {
		t.Fatalf("Show = %q %+v %v", text, info, err)
	}
	// The text is sealed: the store holds no plaintext, and a version's
	// ciphertext does not open as another version.
	m, _ := db.Memory(ctx, "org_a", "", "style")
	if strings.Contains(string(m.Sealed), "second") {
		t.Fatal("stored in plaintext")
	}
	m.Version = 1
	if _, err := memory.Open(ctx, svc.Keys, m); !errors.Is(err, memory.ErrUnreadable) {
		t.Fatalf("version 2's text opened as version 1: %v", err)
	}
	if err := svc.Remove(ctx, "org_a", "", "style"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.Show(ctx, "org_a", "", "style"); !errors.Is(err, edge.ErrNotFound) {
		t.Fatalf("Show after Remove: %v", err)
	}
	if infos, err := svc.List(ctx, "org_a"); err != nil || len(infos) != 0 {
		t.Fatalf("List after Remove: %+v %v", infos, err)
	}
	if info, err := svc.Set(ctx, "org_a", "", "style", []byte("third")); err != nil || info.Version != 3 {
		t.Fatalf("Set after Remove = %+v, %v", info, err)
	}
}

// racing is a store whose first PutMemory finds another set came first.
type racing struct {
	*sqlite.DB
	raced bool
	svc   *memory.Service
}

func (r *racing) PutMemory(ctx context.Context, m edge.Memory) error {
	if !r.raced {
		r.raced = true
		if _, err := (memory.Service{Store: r.DB, Keys: r.svc.Keys}).Set(ctx, m.OrgID, m.KeyID, m.Name, []byte("theirs")); err != nil {
			return err
		}
	}
	return r.DB.PutMemory(ctx, m)
}

func TestSetRetriesAfterAConcurrentSet(t *testing.T) {
	svc, db := setup(t)
	r := &racing{DB: db, svc: &svc}
	info, err := memory.Service{Store: r, Keys: svc.Keys}.Set(context.Background(), "org_a", "", "style", []byte("mine"))
	if err != nil || info.Version != 2 {
		t.Fatalf("Set after a concurrent set = %+v, %v; want version 2", info, err)
	}
	if text, _, _ := svc.Show(context.Background(), "org_a", "", "style"); string(text) != "mine" {
		t.Fatalf("latest text %q", text)
	}
}

func TestCheckText(t *testing.T) {
	for _, c := range []struct {
		text string
		ok   bool
	}{
		{"x", true},
		{"", false},
		{" \n\t", false},
		{"\xff", false},
		{strings.Repeat("a", edge.MaxMemoryBytes), true},
		{strings.Repeat("a", edge.MaxMemoryBytes+1), false},
	} {
		if err := memory.CheckText([]byte(c.text)); (err == nil) != c.ok || (err != nil && !errors.Is(err, edge.ErrInvalid)) {
			t.Errorf("CheckText(%.20q) = %v", c.text, err)
		}
	}
}

func TestEstimateTokens(t *testing.T) {
	for _, c := range []struct {
		text string
		want int64
	}{
		{"", 0},
		{"a", 1},
		{"abcd", 1},
		{"abcde", 2},
		{"Café au lait.", 4}, // 12 ASCII bytes, one other character
		{"日本語", 3},
	} {
		if got := memory.EstimateTokens([]byte(c.text)); got != c.want {
			t.Errorf("EstimateTokens(%q) = %d, want %d", c.text, got, c.want)
		}
	}
}
