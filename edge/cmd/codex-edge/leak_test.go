//go:build !localkms

package main

import (
	"testing"

	"github.com/persiv/codex/edge/internal/testutil"
)

// TestMain fails the package's tests when a goroutine outlives them.
func TestMain(m *testing.M) { testutil.VerifyTestMain(m) }
