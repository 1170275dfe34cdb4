package settings_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/persiv/codex/edge/settings"
)

// TestCache: an org's value is loaded once and held; Forget makes the next
// Get load it again; a load that straddles a Forget serves its caller but
// is not held; a failed load is not held either.
func TestCache(t *testing.T) {
	ctx := context.Background()
	var loads atomic.Int64
	value := "v1"
	var during func()
	c := settings.New(func(context.Context, string) (string, error) {
		loads.Add(1)
		v := value
		if during != nil {
			during()
		}
		if v == "fail" {
			return "", errors.New("store down")
		}
		return v, nil
	})
	for range 3 {
		if v, err := c.Get(ctx, "org_a"); err != nil || v != "v1" {
			t.Fatalf("Get = %q, %v", v, err)
		}
	}
	if loads.Load() != 1 {
		t.Fatalf("%d loads for three Gets, want 1", loads.Load())
	}
	value = "v2"
	c.Forget("org_a")
	if v, _ := c.Get(ctx, "org_a"); v != "v2" {
		t.Fatalf("after Forget: %q", v)
	}
	// A change lands while a load is in progress.
	value = "v3"
	c.Forget("org_a")
	during = func() { during = nil; value = "v4"; c.Forget("org_a") }
	if v, _ := c.Get(ctx, "org_a"); v != "v3" {
		t.Fatalf("the straddling load served %q", v)
	}
	if v, _ := c.Get(ctx, "org_a"); v != "v4" {
		t.Fatalf("a load that straddled a change was held: %q", v)
	}
	value = "fail"
	c.Forget("org_a")
	if _, err := c.Get(ctx, "org_a"); err == nil {
		t.Fatal("a failed load returned no error")
	}
	value = "v5"
	if v, err := c.Get(ctx, "org_a"); err != nil || v != "v5" {
		t.Fatalf("after a failed load: %q, %v", v, err)
	}
}
