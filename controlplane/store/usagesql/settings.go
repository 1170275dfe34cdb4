package usagesql

import (
	"encoding/json"
	"fmt"

	"github.com/persiv/codex/shared/wire"
)

// SettingsJSON is an edge's settings as the edges.settings column keeps
// them; nil (SQL NULL, which keeps the stored value) when the batch
// carried none.
func SettingsJSON(st *wire.Settings) any {
	if st == nil {
		return nil
	}
	data, err := json.Marshal(st)
	if err != nil {
		return nil // a plain struct of strings and integers always marshals
	}
	return string(data)
}

// ParseSettings reads the edges.settings column.
func ParseSettings(s string) (*wire.Settings, error) {
	var st wire.Settings
	if err := json.Unmarshal([]byte(s), &st); err != nil {
		return nil, fmt.Errorf("edge settings: %w", err)
	}
	return &st, nil
}

// Instance is a batch's instance as the usage_batches.instance column
// keeps it: nil (SQL NULL) when the batch carried none.
func Instance(b *wire.UsageBatch) any {
	if b.Instance == "" {
		return nil
	}
	return b.Instance
}
