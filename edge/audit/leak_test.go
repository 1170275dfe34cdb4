package audit

import (
	"testing"

	"github.com/persiv/codex/edge/internal/testutil"
)

// TestMain fails the package's tests when a goroutine outlives them (the
// writers the tests start must be closed).
func TestMain(m *testing.M) { testutil.VerifyTestMain(m) }
