package budget_test

import (
	"testing"
	"time"

	"github.com/persiv/codex/edge/budget"
	"github.com/persiv/codex/edge/budget/budgettest"
)

func TestLocalLedger(t *testing.T) {
	budgettest.Run(t, func(t *testing.T, seed budget.Seeder, ttl time.Duration) budget.Ledger {
		return budget.NewLocal(seed, ttl)
	})
}
