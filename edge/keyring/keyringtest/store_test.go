package keyringtest_test

import (
	"testing"

	"github.com/persiv/codex/edge/keyring"
	"github.com/persiv/codex/edge/keyring/keyringtest"
)

func TestMemStore(t *testing.T) {
	keyringtest.StoreContract(t, func(*testing.T) keyring.Store { return keyring.NewMemStore() })
}
