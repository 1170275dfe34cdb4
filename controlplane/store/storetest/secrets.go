package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/persiv/codex/controlplane"
)

// testDeploymentSecrets: a deployment secret is written once; later and
// concurrent writers get the first one's bytes back.
func testDeploymentSecrets(t *testing.T, s controlplane.Store) {
	ctx := t.Context()
	if _, err := s.DeploymentSecret(ctx, "session"); !errors.Is(err, controlplane.ErrNotFound) {
		t.Fatalf("unknown secret: %v, want ErrNotFound", err)
	}
	got, err := s.AddDeploymentSecret(ctx, "session", []byte("first"))
	if err != nil || string(got) != "first" {
		t.Fatalf("add: %q, %v", got, err)
	}
	if got, err := s.AddDeploymentSecret(ctx, "session", []byte("second")); err != nil || string(got) != "first" {
		t.Fatalf("second add: %q, %v; want the first one's bytes", got, err)
	}
	if got, err := s.DeploymentSecret(ctx, "session"); err != nil || string(got) != "first" {
		t.Fatalf("read: %q, %v", got, err)
	}
	results := make([][]byte, 8)
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() {
			got, err := s.AddDeploymentSecret(context.Background(), "race", fmt.Appendf(nil, "writer %d", i))
			if err != nil {
				t.Error(err)
			}
			results[i] = got
		})
	}
	wg.Wait()
	for i, r := range results {
		if !bytes.Equal(r, results[0]) {
			t.Fatalf("writer %d got %q, writer 0 %q: concurrent writers disagree", i, r, results[0])
		}
	}
}
