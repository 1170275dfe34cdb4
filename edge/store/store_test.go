package store_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/store"
)

func TestWrap(t *testing.T) {
	driver := errors.New("duplicate key")
	cases := []struct {
		name     string
		err      error
		kind     error
		want     string
		wantKind error
	}{
		{"nil stays nil", nil, edge.ErrConflict, "", nil},
		{"kind added", driver, edge.ErrConflict, "create org: conflict: duplicate key", edge.ErrConflict},
		{"no kind", driver, nil, "create org: duplicate key", nil},
		{"kind not repeated", fmt.Errorf("x: %w", edge.ErrNotFound), edge.ErrNotFound, "create org: x: not found", edge.ErrNotFound},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := store.Wrap("create org", c.err, c.kind)
			if c.err == nil {
				if got != nil {
					t.Fatalf("got %v", got)
				}
				return
			}
			if got.Error() != c.want || !errors.Is(got, c.err) || (c.wantKind != nil && !errors.Is(got, c.wantKind)) {
				t.Fatalf("got %q, want %q wrapping both", got, c.want)
			}
		})
	}
}
