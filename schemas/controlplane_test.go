package schemas

import (
	"encoding/json"
	"io/fs"
	"testing"
)

func TestControlplaneAndWireEmbedded(t *testing.T) {
	for name, tc := range map[string]struct {
		fsys fs.FS
		file string
	}{
		"ControlplaneSQLite":   {ControlplaneSQLite(), "00001_init.sql"},
		"ControlplanePostgres": {ControlplanePostgres(), "00001_init.sql"},
		"Wire":                 {Wire(), "usage_batch.v1.schema.json"},
		"WireV2":               {Wire(), "usage_batch.v2.schema.json"},
		"WireV3":               {Wire(), "usage_batch.v3.schema.json"},
	} {
		data, err := fs.ReadFile(tc.fsys, tc.file)
		if err != nil || len(data) == 0 {
			t.Errorf("%s: %s: %v", name, tc.file, err)
		}
	}
	data, _ := fs.ReadFile(Wire(), "usage_batch.v1.schema.json")
	var schema map[string]any
	if err := json.Unmarshal(data, &schema); err != nil || schema["$id"] != "urn:persiv:codex:wire:usage_batch:v1" {
		t.Fatalf("wire schema: %v, $id %v", err, schema["$id"])
	}
}
