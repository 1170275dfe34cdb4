package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

var update = flag.Bool("update", false, "rewrite the golden JSON Schema from the Go type")

const schemaPath = "../../schemas/wire/usage_batch.v3.schema.json"

func schemaPathOf(version int) string {
	return fmt.Sprintf("../../schemas/wire/usage_batch.v%d.schema.json", version)
}

func validBatch() *UsageBatch {
	start := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	row := UsageRow{
		Workspace: "ws_3f9a", Provider: "openai", Model: "gpt-4o-2024-08-06", KeyRef: "k_7c1e",
		CacheStatus: CacheMiss, StatusClass: Status2xx,
		Requests: 3, Input: Tokens{Sum: 1200}, CachedInput: Tokens{Sum: 100}, CacheWrite: Tokens{Unknown: 3},
		Output: Tokens{Sum: 300}, Reasoning: Tokens{Sum: 20, Unknown: 1},
		CostNanoUSD: 4_500_000, CostUnknown: 0, SavedNanoUSD: 0,
	}
	row.LatencyMS[3] = 2
	row.LatencyMS[LatencyBuckets-1] = 1
	row.Limited, row.BudgetRefused = 1, 1
	hit := row
	hit.CacheStatus = CacheHit
	hit.Model = "claude-3-5-sonnet-20241022"
	hit.Provider = "anthropic"
	hit.SavedNanoUSD = 1_000
	return &UsageBatch{
		SchemaVersion: SchemaVersion, WindowStart: start, WindowEnd: start.Add(time.Minute),
		OrgID: "org_a1", EdgeID: "edge_b2", Seq: 7, Rows: []UsageRow{row, hit},
		Budgets: []BudgetUse{{Workspace: "ws_3f9a", KeyRef: "none", Period: "month", CapNanoUSD: 100e9, SpentNanoUSD: 12e9},
			{Workspace: "ws_3f9a", KeyRef: "k_7c1e", Period: "day", CapNanoUSD: 5e9, SpentNanoUSD: 0}},
		Memories: []MemoryUse{{Workspace: "ws_3f9a", KeyRef: "none", Name: "style", Version: 3, Requests: 6, Tokens: 720, Estimated: 6},
			{Workspace: "ws_3f9a", KeyRef: "k_7c1e", Name: "_tone.v2", Version: 1, Requests: 3, Tokens: 90, Estimated: 3}},
		Audit:    []AuditCount{{Workspace: "ws_3f9a", Level: "hash", Records: 5}, {Workspace: "ws_3f9a", Level: "full", Records: 1}},
		Instance: "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
	}
}

func mustEncode(t testing.TB, b *UsageBatch) []byte {
	t.Helper()
	data, err := Encode(b)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// Settings are optional: batches without them (earlier edges) decode, and
// batches with them round-trip.
func TestSettings(t *testing.T) {
	t.Parallel()
	b := validBatch()
	if bytes.Contains(mustEncode(t, b), []byte("settings")) {
		t.Fatal("a batch without settings encodes them")
	}
	b.Settings = &Settings{Dimensions: []string{DimWorkspace, DimModel}, MinCount: 5, HeartbeatS: 900}
	got, err := Decode(mustEncode(t, b))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Settings, b.Settings) {
		t.Fatalf("settings %+v, want %+v", got.Settings, b.Settings)
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	b := validBatch()
	got, err := Decode(mustEncode(t, b))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, b) {
		t.Fatalf("round trip changed the batch:\n got %+v\nwant %+v", got, b)
	}
}

// edit applies f to the generic JSON form of a valid batch.
func edit(t *testing.T, f func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(mustEncode(t, validBatch()), &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func row0(m map[string]any) map[string]any { return m["rows"].([]any)[0].(map[string]any) }

func mem0(m map[string]any) map[string]any { return m["memories"].([]any)[0].(map[string]any) }

type rejectCase struct {
	name string
	data func(t *testing.T) []byte
	// goOnly marks rules JSON Schema cannot express (cross-field sums,
	// uniqueness of row keys, time order); the schema accepts these.
	goOnly bool
}

func rejectCases() []rejectCase {
	set := func(f func(m map[string]any)) func(t *testing.T) []byte {
		return func(t *testing.T) []byte { return edit(t, f) }
	}
	raw := func(s string) func(t *testing.T) []byte { return func(*testing.T) []byte { return []byte(s) } }
	long := strings.Repeat("a", 200)
	return []rejectCase{
		{name: "unknown top field", data: set(func(m map[string]any) { m["prompt"] = "hello" })},
		{name: "unknown row field", data: set(func(m map[string]any) { row0(m)["content"] = "x" })},
		{name: "unknown tokens field", data: set(func(m map[string]any) { row0(m)["input"].(map[string]any)["text"] = 1 })},
		{name: "missing field", data: set(func(m map[string]any) { delete(m, "seq") })},
		{name: "null rows", data: set(func(m map[string]any) { m["rows"] = nil })},
		{name: "null model", data: set(func(m map[string]any) { row0(m)["model"] = nil })},
		{name: "wrong version", data: set(func(m map[string]any) { m["schema_version"] = 4 })},
		{name: "version 2 with memories", data: set(func(m map[string]any) { m["schema_version"] = 2 })},
		{name: "no memories in version 3", data: set(func(m map[string]any) { delete(m, "memories") })},
		{name: "no audit in version 3", data: set(func(m map[string]any) { delete(m, "audit") })},
		{name: "memory text", data: set(func(m map[string]any) { mem0(m)["text"] = "You are a pirate" })},
		{name: "memory digest", data: set(func(m map[string]any) { mem0(m)["digest"] = "ab12" })},
		{name: "prose in memory name", data: set(func(m map[string]any) { mem0(m)["name"] = "always answer in french" })},
		{name: "oversized memory name", data: set(func(m map[string]any) { mem0(m)["name"] = long })},
		{name: "negative memory tokens", data: set(func(m map[string]any) { mem0(m)["tokens"] = -1 })},
		{name: "zero memory requests", data: set(func(m map[string]any) { mem0(m)["requests"] = 0 })},
		{name: "estimated above requests", goOnly: true, data: set(func(m map[string]any) { mem0(m)["estimated"] = 7 })},
		{name: "version 0 of a named memory", goOnly: true, data: set(func(m map[string]any) { mem0(m)["version"] = 0 })},
		{name: "duplicate memory", goOnly: true, data: set(func(m map[string]any) {
			m["memories"] = []any{mem0(m), mem0(m)}
		})},
		{name: "unknown audit level", data: set(func(m map[string]any) { m["audit"].([]any)[0].(map[string]any)["level"] = "content" })},
		{name: "audit content", data: set(func(m map[string]any) { m["audit"].([]any)[0].(map[string]any)["content"] = "x" })},
		{name: "zero audit records", data: set(func(m map[string]any) { m["audit"].([]any)[0].(map[string]any)["records"] = 0 })},
		{name: "duplicate audit count", goOnly: true, data: set(func(m map[string]any) {
			m["audit"] = []any{m["audit"].([]any)[0], m["audit"].([]any)[0]}
		})},
		{name: "version 1 with budgets", data: set(func(m map[string]any) { m["schema_version"] = 1 })},
		{name: "no budgets in version 2", data: set(func(m map[string]any) { delete(m, "budgets") })},
		{name: "budget period", data: set(func(m map[string]any) { m["budgets"].([]any)[0].(map[string]any)["period"] = "week" })},
		{name: "zero budget cap", data: set(func(m map[string]any) { m["budgets"].([]any)[0].(map[string]any)["cap_nano_usd"] = 0 })},
		{name: "limited above requests", goOnly: true, data: set(func(m map[string]any) { row0(m)["limited"] = 4 })},
		{name: "duplicate budget", goOnly: true, data: set(func(m map[string]any) {
			m["budgets"] = []any{m["budgets"].([]any)[0], m["budgets"].([]any)[0]}
		})},
		{name: "oversized model", data: set(func(m map[string]any) { row0(m)["model"] = long })},
		{name: "oversized workspace", data: set(func(m map[string]any) { row0(m)["workspace"] = long })},
		{name: "space in key_ref", data: set(func(m map[string]any) { row0(m)["key_ref"] = "alice smith" })},
		{name: "prose in model", data: set(func(m map[string]any) { row0(m)["model"] = "tell me a secret" })},
		{name: "dot in org id", data: set(func(m map[string]any) { m["org_id"] = "org.a" })},
		{name: "uppercase edge id", data: set(func(m map[string]any) { m["edge_id"] = "Edge" })},
		{name: "empty provider", data: set(func(m map[string]any) { row0(m)["provider"] = "" })},
		{name: "unknown cache status", data: set(func(m map[string]any) { row0(m)["cache_status"] = "stale" })},
		{name: "unknown status class", data: set(func(m map[string]any) { row0(m)["status_class"] = "6xx" })},
		{name: "oversized number", data: set(func(m map[string]any) { row0(m)["cost_nano_usd"] = 1e17 })},
		{name: "number beyond int64", data: raw(`{"schema_version":1,"seq":99999999999999999999999}`)},
		{name: "negative tokens", data: set(func(m map[string]any) { row0(m)["output"].(map[string]any)["sum"] = -1 })},
		{name: "fractional count", data: set(func(m map[string]any) { row0(m)["requests"] = 1.5 })},
		{name: "string count", data: set(func(m map[string]any) { row0(m)["requests"] = "3" })},
		{name: "zero seq", data: set(func(m map[string]any) { m["seq"] = 0 })},
		{name: "zero requests", data: set(func(m map[string]any) { row0(m)["requests"] = 0 })},
		{name: "short histogram", data: set(func(m map[string]any) { row0(m)["latency_ms"] = []any{3} })},
		{name: "local time", data: set(func(m map[string]any) { m["window_start"] = "2026-11-29T11:00:00+01:00" })},
		{name: "not a time", data: set(func(m map[string]any) { m["window_start"] = "yesterday" })},
		{name: "not an object", data: raw(`[1,2,3]`)},
		{name: "trailing data", data: func(t *testing.T) []byte { return append(mustEncode(t, validBatch()), []byte(` {}`)...) }},
		{name: "repeated key", data: func(t *testing.T) []byte {
			return bytes.Replace(mustEncode(t, validBatch()), []byte(`"seq":7`), []byte(`"seq":7,"seq":8`), 1)
		}},
		{name: "case-folded key", data: func(t *testing.T) []byte {
			return bytes.Replace(mustEncode(t, validBatch()), []byte(`"seq":`), []byte(`"SEQ":`), 1)
		}},
		{name: "too many rows", data: set(func(m map[string]any) {
			rows := make([]any, MaxRows+1)
			for i := range rows {
				rows[i] = row0(m)
			}
			m["rows"] = rows
		})},
		{name: "too large", data: func(*testing.T) []byte { return bytes.Repeat([]byte(" "), MaxBatchBytes+1) }},
		{name: "histogram does not add up", goOnly: true, data: set(func(m map[string]any) { row0(m)["requests"] = 4 })},
		{name: "unknown above requests", goOnly: true, data: set(func(m map[string]any) { row0(m)["cost_unknown"] = 9 })},
		{name: "window reversed", goOnly: true, data: set(func(m map[string]any) { m["window_end"] = "2026-11-29T09:00:00Z" })},
		{name: "window too long", goOnly: true, data: set(func(m map[string]any) { m["window_end"] = "2026-11-29T12:00:00Z" })},
		{name: "time out of range", goOnly: true, data: set(func(m map[string]any) { m["window_start"] = "1999-01-01T00:00:00Z" })},
		{name: "unknown dimension", data: set(func(m map[string]any) {
			m["settings"] = map[string]any{"dimensions": []any{"prompt"}, "min_count": 0, "heartbeat_s": 900}
		})},
		{name: "unknown settings field", data: set(func(m map[string]any) {
			m["settings"] = map[string]any{"dimensions": []any{}, "min_count": 0, "heartbeat_s": 900, "note": "x"}
		})},
		{name: "settings without dimensions", data: set(func(m map[string]any) { m["settings"] = map[string]any{"min_count": 0, "heartbeat_s": 900} })},
		{name: "null settings", data: set(func(m map[string]any) { m["settings"] = nil })},
		{name: "repeated dimension", data: set(func(m map[string]any) {
			m["settings"] = map[string]any{"dimensions": []any{"model", "model"}, "min_count": 0, "heartbeat_s": 900}
		})},
		{name: "instance too short", data: set(func(m map[string]any) { m["instance"] = "0f1e2d3c" })},
		{name: "instance too long", data: set(func(m map[string]any) { m["instance"] = m["instance"].(string) + "00" })},
		{name: "uppercase instance", data: set(func(m map[string]any) { m["instance"] = "0F1E2D3C4B5A69788796A5B4C3D2E1F0" })},
		{name: "host name as instance", data: set(func(m map[string]any) { m["instance"] = "edge-7f9c.prod.acme.example" })},
		{name: "empty instance", data: set(func(m map[string]any) { m["instance"] = "" })},
		{name: "null instance", data: set(func(m map[string]any) { m["instance"] = nil })},
		{name: "numeric instance", data: set(func(m map[string]any) { m["instance"] = 12 })},
		{name: "version 2 with instance", data: set(func(m map[string]any) {
			m["schema_version"] = 2
			delete(m, "memories")
			delete(m, "audit")
		})},
		{name: "duplicate row key", goOnly: true, data: set(func(m map[string]any) { m["rows"] = []any{row0(m), row0(m)} })},
	}
}

func TestDecodeRejects(t *testing.T) {
	t.Parallel()
	for _, tc := range rejectCases() {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Decode(tc.data(t))
			if err == nil {
				t.Fatalf("accepted: %+v", b)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
		})
	}
}

// TestErrorsDoNotQuoteInput: a rejected value never appears in the error
// text, so logging a rejection cannot leak what an edge tried to send.
func TestErrorsDoNotQuoteInput(t *testing.T) {
	t.Parallel()
	secret := "SECRETxPROMPTxTEXT"
	for _, data := range [][]byte{
		edit(t, func(m map[string]any) { row0(m)["model"] = secret + " with spaces" }),
		edit(t, func(m map[string]any) { m[secret] = 1 }),
		edit(t, func(m map[string]any) { row0(m)["requests"] = secret }),
		[]byte(`{"` + secret + ``),
	} {
		_, err := Decode(data)
		if err == nil || strings.Contains(err.Error(), secret) {
			t.Fatalf("error %q quotes the input", err)
		}
	}
}

func TestSubject(t *testing.T) {
	t.Parallel()
	org, edge, err := ParseSubject(Subject("org_a1", "edge_b2"))
	if err != nil || org != "org_a1" || edge != "edge_b2" {
		t.Fatalf("ParseSubject(Subject) = %q, %q, %v", org, edge, err)
	}
	for _, s := range []string{"codex.usage.v1.org", "codex.usage.v1.a.b.c", "codex.usage.v2.a.b", "codex.usage.v1..b", "codex.usage.v1.A.b"} {
		if _, _, err := ParseSubject(s); err == nil {
			t.Errorf("ParseSubject(%q) accepted", s)
		}
	}
	if got := MsgID("edge_b2", 42); got != "edge_b2:42" {
		t.Errorf("MsgID = %q", got)
	}
}

func TestLatencyBucket(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		d    time.Duration
		want int
	}{
		{0, 0}, {10 * time.Millisecond, 0}, {10*time.Millisecond + 1, 1}, {100 * time.Millisecond, 3},
		{120 * time.Second, len(LatencyBoundsMS) - 1}, {121 * time.Second, len(LatencyBoundsMS)}, {time.Hour, LatencyBuckets - 1},
	} {
		if got := LatencyBucket(tc.d); got != tc.want {
			t.Errorf("LatencyBucket(%v) = %d, want %d", tc.d, got, tc.want)
		}
	}
}

func TestClassOf(t *testing.T) {
	t.Parallel()
	for status, want := range map[int]StatusClass{0: StatusError, 101: Status1xx, 200: Status2xx, 304: Status3xx, 429: Status4xx, 502: Status5xx, 600: StatusError} {
		if got := ClassOf(status); got != want {
			t.Errorf("ClassOf(%d) = %s, want %s", status, got, want)
		}
	}
}

// generateSchema derives the JSON Schema from the Go type: every field of
// every struct must have a rule below, so adding a field without updating
// the schema fails this test, and so does changing a bound.
func generateSchema(t *testing.T, version int) []byte {
	t.Helper()
	count := func(min int64) map[string]any {
		return map[string]any{"type": "integer", "minimum": min, "maximum": int64(MaxCount)}
	}
	str := func(c *Charset) map[string]any {
		return map[string]any{"type": "string", "maxLength": c.MaxLen, "pattern": c.Pattern()}
	}
	enum := func(vs any) map[string]any { return map[string]any{"type": "string", "enum": vs} }
	dims := Dimensions
	if version < 3 {
		dims = dimensionsV2
	}
	dateTime := map[string]any{"type": "string", "format": "date-time", "pattern": "Z$",
		"description": "RFC 3339 in UTC, from 2020 until 2200"}
	rules := map[string]map[string]any{
		"schema_version": {"const": version},
		"limited":        count(0),
		"budget_refused": count(0),
		"budgets":        {"type": "array", "maxItems": MaxBudgets, "items": map[string]any{"$ref": "#/$defs/budget"}},
		"period":         enum([]string{"day", "month"}),
		"cap_nano_usd":   count(1),
		"spent_nano_usd": count(0),
		"window_start":   dateTime,
		"window_end":     dateTime,
		"org_id":         str(IDChars),
		"edge_id":        str(IDChars),
		"seq":            count(1),
		"rows":           {"type": "array", "maxItems": MaxRows, "items": map[string]any{"$ref": "#/$defs/row"}},
		"workspace":      str(LabelChars),
		"provider":       str(ProviderChars),
		"model":          str(ModelChars),
		"key_ref":        str(LabelChars),
		"cache_status":   enum(CacheStatuses),
		"status_class":   enum(StatusClasses),
		"requests":       count(1),
		"input":          {"$ref": "#/$defs/tokens"},
		"cached_input":   {"$ref": "#/$defs/tokens"},
		"cache_write":    {"$ref": "#/$defs/tokens"},
		"output":         {"$ref": "#/$defs/tokens"},
		"reasoning":      {"$ref": "#/$defs/tokens"},
		"cost_nano_usd":  count(0),
		"cost_unknown":   count(0),
		"saved_nano_usd": count(0),
		"latency_ms": {"type": "array", "minItems": LatencyBuckets, "maxItems": LatencyBuckets, "items": count(0),
			"description": fmt.Sprintf("request counts per latency bucket; upper bounds in ms %v, then one bucket above the last; the counts add up to requests", LatencyBoundsMS)},
		"sum":      count(0),
		"unknown":  count(0),
		"settings": {"$ref": "#/$defs/settings"},
		"dimensions": {"type": "array", "uniqueItems": true, "maxItems": len(dims), "items": enum(dims),
			"description": "the row dimensions the edge sends; the others arrive as \"" + Other + "\""},
		"memories": {"type": "array", "maxItems": MaxMemories, "items": map[string]any{"$ref": "#/$defs/memory"}},
		"audit":    {"type": "array", "maxItems": MaxAuditCounts, "items": map[string]any{"$ref": "#/$defs/audit"}},
		"name":     str(MemoryNameChars),
		"version": {"type": "integer", "minimum": 0, "maximum": int64(MaxCount),
			"description": "the memory's version, from 1; 0 with name \"" + Other + "\" for a withheld or folded memory"},
		"tokens":      count(0),
		"estimated":   count(0),
		"level":       enum(AuditLevels),
		"records":     count(1),
		"min_count":   count(0),
		"heartbeat_s": map[string]any{"type": "integer", "minimum": 0, "maximum": MaxHeartbeatS},
		"instance": {"type": "string", "minLength": InstanceLen, "maxLength": InstanceLen, "pattern": InstanceChars.Pattern(),
			"description": "random id of the edge process that aggregated the batch, drawn when it starts; derived from nothing about the host (optional: earlier edges do not send it)"},
	}
	object := func(typ reflect.Type, desc string) map[string]any {
		props := map[string]any{}
		var required []string
		for i := 0; i < typ.NumField(); i++ {
			name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
			rule, ok := rules[name]
			if !ok {
				t.Fatalf("field %s.%s has no schema rule", typ.Name(), typ.Field(i).Name)
			}
			props[name] = rule
			if _, opts, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ","); opts != "omitempty" {
				required = append(required, name)
			}
		}
		return map[string]any{"type": "object", "additionalProperties": false, "required": required,
			"properties": props, "description": desc}
	}
	batchType, rowType := reflect.TypeFor[UsageBatch](), reflect.TypeFor[UsageRow]()
	switch version {
	case 1:
		batchType, rowType = reflect.TypeFor[batchV1](), reflect.TypeFor[rowV1]()
	case 2:
		batchType = reflect.TypeFor[batchV2]()
	}
	schema := object(batchType, fmt.Sprintf(
		"aggregated usage of one window for one control plane org from one edge; at most %d bytes encoded, window at most %s, row keys unique within a batch",
		MaxBatchBytes, MaxWindow))
	schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
	schema["$id"] = fmt.Sprintf("urn:persiv:codex:wire:usage_batch:v%d", version)
	schema["title"] = fmt.Sprintf("persiv codex usage batch, version %d", version)
	defs := map[string]any{
		"row":    object(rowType, "requests of the window sharing every key field"),
		"tokens": object(reflect.TypeFor[Tokens](), "a token counter; unknown counts requests whose figure the provider did not report (at most requests)"),
	}
	if version >= 2 {
		defs["settings"] = object(reflect.TypeFor[Settings](), "the edge's metadata minimization settings (optional: earlier edges do not send it)")
		defs["budget"] = object(reflect.TypeFor[BudgetUse](), "a budget of a workspace (key_ref none) or key and its spend in the current period; unique by workspace, key_ref and period")
	}
	if version >= 3 {
		defs["memory"] = object(reflect.TypeFor[MemoryUse](), "a memory injected into requests of the window (key_ref none: the workspace's own) and its tokens summed over them; estimated counts the requests whose tokens are the edge's estimate (at most requests); never the text; unique by workspace, key_ref, name and version")
		defs["audit"] = object(reflect.TypeFor[AuditCount](), "how many audit records of a capture level the edge wrote for a workspace in the window; never their content; unique by workspace and level")
	}
	schema["$defs"] = defs
	data, err := json.MarshalIndent(schema, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(data, '\n')
}

func TestSchemaGolden(t *testing.T) {
	t.Parallel()
	for _, v := range SchemaVersions {
		path := schemaPathOf(v)
		want := generateSchema(t, v)
		if *update {
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s drifted from the Go type; run go test ./shared/wire -run TestSchemaGolden -update and review the diff", path)
		}
	}
}

// TestInstance: the instance id is optional in version 3, round-trips,
// is dropped for older versions (whose decoders refuse it), and
// NewInstance draws valid, distinct ids.
func TestInstance(t *testing.T) {
	t.Parallel()
	a, b := NewInstance(), NewInstance()
	if !ValidInstance(a) || !ValidInstance(b) || a == b {
		t.Fatalf("NewInstance: %q, %q", a, b)
	}
	full := validBatch()
	full.Instance = a
	got, err := Decode(mustEncode(t, full))
	if err != nil || got.Instance != a {
		t.Fatalf("round trip: %v, instance %q", err, got.Instance)
	}
	anonymous := validBatch()
	anonymous.Instance = ""
	data := mustEncode(t, anonymous)
	if bytes.Contains(data, []byte(`"instance"`)) {
		t.Fatalf("a batch without instance encodes one: %s", data)
	}
	if got, err := Decode(data); err != nil || got.Instance != "" {
		t.Fatalf("a version 3 batch without instance: %v, %q", err, got.Instance)
	}
	for _, v := range []int{1, 2} {
		low := full.AsVersion(v)
		if low.Instance != "" || full.Instance != a {
			t.Fatalf("AsVersion(%d): instance %q, original %q", v, low.Instance, full.Instance)
		}
		data := mustEncode(t, low)
		if bytes.Contains(data, []byte(`"instance"`)) {
			t.Fatalf("version %d carries the instance: %s", v, data)
		}
		with := *low
		with.Instance = a
		if _, err := Encode(&with); err == nil {
			t.Errorf("a version %d batch with an instance encodes", v)
		}
		smuggled := bytes.Replace(data, []byte(`"seq":7,`), []byte(`"seq":7,"instance":"`+a+`",`), 1)
		if _, err := Decode(smuggled); err == nil {
			t.Errorf("a version %d batch with an instance decodes", v)
		}
	}
}

// TestVersion1: version 1 batches, which older edges send and older
// control planes take, still decode; a batch lowered to version 1 drops
// what version 1 cannot carry and matches version 1's schema; and an
// edge sends version 1 unless its control plane said it takes more.
func TestVersion1(t *testing.T) {
	b := validBatch().AsVersion(1)
	data := mustEncode(t, b)
	if bytes.Contains(data, []byte(`"budgets"`)) || bytes.Contains(data, []byte(`"limited"`)) {
		t.Fatalf("version 1 carries version 2 fields: %s", data)
	}
	got, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, b) || got.Rows[0].Limited != 0 || got.SchemaVersion != 1 {
		t.Fatalf("version 1 round trip: %+v", got)
	}
	if err := validateWith(t, schemaPathOf(1), data); err != nil {
		t.Fatalf("version 1 schema rejects a version 1 batch: %v", err)
	}
	if err := validateWith(t, schemaPathOf(1), mustEncode(t, validBatch().AsVersion(2))); err == nil {
		t.Fatal("version 1 schema accepts a version 2 batch")
	}
	// A version 1 batch with a version 2 field is refused.
	bad := bytes.Replace(data, []byte(`"requests":3,`), []byte(`"requests":3,"limited":1,`), 1)
	if _, err := Decode(bad); err == nil {
		t.Fatal("a version 1 row with limited decodes")
	}
	if _, err := Encode(&UsageBatch{SchemaVersion: 1, WindowStart: b.WindowStart, WindowEnd: b.WindowEnd, OrgID: b.OrgID, EdgeID: b.EdgeID, Seq: 1,
		Rows: []UsageRow{}, Budgets: validBatch().Budgets}); err == nil {
		t.Fatal("a version 1 batch with budgets encodes")
	}
	for _, c := range []struct {
		theirs []int
		want   int
	}{{nil, 1}, {[]int{1}, 1}, {[]int{1, 2}, 2}, {[]int{1, 2, 3}, 3}, {[]int{1, 2, 3, 7}, 3}} {
		if got := Negotiate(c.theirs); got != c.want {
			t.Errorf("Negotiate(%v) = %d, want %d", c.theirs, got, c.want)
		}
	}
}

// TestVersion2: a batch lowered to version 2, which a control plane
// before memories and audit counts takes, drops them and the memory
// dimension of its settings, matches version 2's schema and decodes; a
// version 2 batch carrying them is refused.
func TestVersion2(t *testing.T) {
	t.Parallel()
	full := validBatch()
	full.Settings = &Settings{Dimensions: []string{DimWorkspace, DimMemory}, MinCount: 0, HeartbeatS: 900}
	b := full.AsVersion(2)
	data := mustEncode(t, b)
	for _, field := range []string{`"memories"`, `"audit"`, `"style"`, `"memory"`, `"instance"`} {
		if bytes.Contains(data, []byte(field)) {
			t.Fatalf("version 2 carries %s: %s", field, data)
		}
	}
	if full.Settings.Dimensions[1] != DimMemory || len(full.Memories) == 0 {
		t.Fatal("AsVersion changed the batch it was called on")
	}
	got, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, b) || got.SchemaVersion != 2 || got.Memories != nil || got.Audit != nil {
		t.Fatalf("version 2 round trip: %+v", got)
	}
	if err := validateWith(t, schemaPathOf(2), data); err != nil {
		t.Fatalf("version 2 schema rejects a version 2 batch: %v", err)
	}
	if err := validateWith(t, schemaPathOf(2), mustEncode(t, validBatch())); err == nil {
		t.Fatal("version 2 schema accepts a version 3 batch")
	}
	if err := validateWith(t, schemaPathOf(3), mustEncode(t, full)); err != nil {
		t.Fatalf("version 3 schema rejects a version 3 batch: %v", err)
	}
	for name, bad := range map[string]*UsageBatch{
		"memories": {SchemaVersion: 2, WindowStart: b.WindowStart, WindowEnd: b.WindowEnd, OrgID: b.OrgID, EdgeID: b.EdgeID, Seq: 1,
			Rows: []UsageRow{}, Memories: full.Memories},
		"audit": {SchemaVersion: 2, WindowStart: b.WindowStart, WindowEnd: b.WindowEnd, OrgID: b.OrgID, EdgeID: b.EdgeID, Seq: 1,
			Rows: []UsageRow{}, Audit: full.Audit},
		"memory dimension": {SchemaVersion: 2, WindowStart: b.WindowStart, WindowEnd: b.WindowEnd, OrgID: b.OrgID, EdgeID: b.EdgeID, Seq: 1,
			Rows: []UsageRow{}, Settings: full.Settings},
	} {
		if _, err := Encode(bad); err == nil {
			t.Errorf("a version 2 batch with %s encodes", name)
		}
	}
	// The same, as an edge might send it: refused by Decode.
	withDim := bytes.Replace(mustEncode(t, &UsageBatch{SchemaVersion: 2, WindowStart: b.WindowStart, WindowEnd: b.WindowEnd, OrgID: b.OrgID, EdgeID: b.EdgeID, Seq: 1,
		Rows: []UsageRow{}, Settings: &Settings{Dimensions: []string{DimModel}}}), []byte(`["model"]`), []byte(`["model","memory"]`), 1)
	if _, err := Decode(withDim); err == nil {
		t.Fatal("a version 2 batch naming the memory dimension decodes")
	}
}

func validateWith(t *testing.T, path string, data []byte) error {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("usage_batch.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("usage_batch.json")
	if err != nil {
		t.Fatal(err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return err
	}
	return sch.Validate(inst)
}

// TestSchemaAgreesWithDecode runs the golden schema through a JSON Schema
// validator on the same inputs as Decode: both accept the valid batch and
// both reject every case the schema can express.
func TestSchemaAgreesWithDecode(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("usage_batch.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("usage_batch.json")
	if err != nil {
		t.Fatal(err)
	}
	validate := func(data []byte) error {
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
		if err != nil {
			return err
		}
		return sch.Validate(inst)
	}
	if err := validate(mustEncode(t, validBatch())); err != nil {
		t.Fatalf("schema rejects a valid batch: %v", err)
	}
	for _, tc := range rejectCases() {
		if tc.goOnly {
			continue
		}
		switch tc.name {
		case "repeated key", "trailing data", "too large":
			continue // properties of the encoding, not of the JSON value
		}
		if err := validate(tc.data(t)); err == nil {
			t.Errorf("%s: schema accepts what Decode rejects", tc.name)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(mustEncode(f, validBatch()))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"schema_version":1,"rows":[{"latency_ms":[1,2]}]}`))
	f.Add(mustEncode(f, validBatch().AsVersion(1)))
	f.Add(mustEncode(f, validBatch().AsVersion(2)))
	withheld := validBatch()
	withheld.Memories = append(withheld.Memories, MemoryUse{Workspace: Other, KeyRef: Other, Name: Other, Requests: 2, Tokens: 40, Estimated: 2})
	withheld.Settings = &Settings{Dimensions: []string{DimModel, DimMemory}, MinCount: 2, HeartbeatS: 60}
	f.Add(mustEncode(f, withheld))
	anonymous := validBatch()
	anonymous.Instance = ""
	f.Add(mustEncode(f, anonymous))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := Decode(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		// Whatever Decode accepts is valid and survives a round trip.
		again, err := Decode(mustEncode(t, b))
		if err != nil {
			t.Fatalf("re-decoding an accepted batch: %v", err)
		}
		if !reflect.DeepEqual(again, b) {
			t.Fatal("round trip changed an accepted batch")
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	batch := validBatch()
	rows := make([]UsageRow, 0, 500)
	for i := 0; i < 500; i++ {
		r := batch.Rows[0]
		r.Model = fmt.Sprintf("model-%d", i)
		rows = append(rows, r)
	}
	batch.Rows = rows
	data := mustEncode(b, batch)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(data); err != nil {
			b.Fatal(err)
		}
	}
}
