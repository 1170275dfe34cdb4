package wire

import (
	"slices"
	"time"
)

// batchV1 and rowV1 are version 1 of UsageBatch and UsageRow, which the
// control plane still accepts from older edges and which edges still send
// to older control planes.
type batchV1 struct {
	SchemaVersion int       `json:"schema_version"`
	WindowStart   time.Time `json:"window_start"`
	WindowEnd     time.Time `json:"window_end"`
	OrgID         string    `json:"org_id"`
	EdgeID        string    `json:"edge_id"`
	Seq           int64     `json:"seq"`
	Rows          []rowV1   `json:"rows"`
}

type rowV1 struct {
	Workspace    string                `json:"workspace"`
	Provider     string                `json:"provider"`
	Model        string                `json:"model"`
	KeyRef       string                `json:"key_ref"`
	CacheStatus  CacheStatus           `json:"cache_status"`
	StatusClass  StatusClass           `json:"status_class"`
	Requests     int64                 `json:"requests"`
	Input        Tokens                `json:"input"`
	CachedInput  Tokens                `json:"cached_input"`
	CacheWrite   Tokens                `json:"cache_write"`
	Output       Tokens                `json:"output"`
	Reasoning    Tokens                `json:"reasoning"`
	CostNanoUSD  int64                 `json:"cost_nano_usd"`
	CostUnknown  int64                 `json:"cost_unknown"`
	SavedNanoUSD int64                 `json:"saved_nano_usd"`
	LatencyMS    [LatencyBuckets]int64 `json:"latency_ms"`
}

func (b *batchV1) current() *UsageBatch {
	out := &UsageBatch{SchemaVersion: 1, WindowStart: b.WindowStart, WindowEnd: b.WindowEnd, OrgID: b.OrgID, EdgeID: b.EdgeID, Seq: b.Seq,
		Rows: make([]UsageRow, len(b.Rows))}
	for i, r := range b.Rows {
		out.Rows[i] = UsageRow{Workspace: r.Workspace, Provider: r.Provider, Model: r.Model, KeyRef: r.KeyRef,
			CacheStatus: r.CacheStatus, StatusClass: r.StatusClass, Requests: r.Requests, Input: r.Input,
			CachedInput: r.CachedInput, CacheWrite: r.CacheWrite, Output: r.Output, Reasoning: r.Reasoning,
			CostNanoUSD: r.CostNanoUSD, CostUnknown: r.CostUnknown, SavedNanoUSD: r.SavedNanoUSD, LatencyMS: r.LatencyMS}
	}
	return out
}

func v1Of(b *UsageBatch) *batchV1 {
	out := &batchV1{SchemaVersion: 1, WindowStart: b.WindowStart, WindowEnd: b.WindowEnd, OrgID: b.OrgID, EdgeID: b.EdgeID, Seq: b.Seq,
		Rows: make([]rowV1, len(b.Rows))}
	for i, r := range b.Rows {
		out.Rows[i] = rowV1{Workspace: r.Workspace, Provider: r.Provider, Model: r.Model, KeyRef: r.KeyRef,
			CacheStatus: r.CacheStatus, StatusClass: r.StatusClass, Requests: r.Requests, Input: r.Input,
			CachedInput: r.CachedInput, CacheWrite: r.CacheWrite, Output: r.Output, Reasoning: r.Reasoning,
			CostNanoUSD: r.CostNanoUSD, CostUnknown: r.CostUnknown, SavedNanoUSD: r.SavedNanoUSD, LatencyMS: r.LatencyMS}
	}
	return out
}

// batchV2 is version 2 of UsageBatch: the same rows, budgets and
// settings, without memories and audit counts.
type batchV2 struct {
	SchemaVersion int         `json:"schema_version"`
	WindowStart   time.Time   `json:"window_start"`
	WindowEnd     time.Time   `json:"window_end"`
	OrgID         string      `json:"org_id"`
	EdgeID        string      `json:"edge_id"`
	Seq           int64       `json:"seq"`
	Rows          []UsageRow  `json:"rows"`
	Budgets       []BudgetUse `json:"budgets"`
	Settings      *Settings   `json:"settings,omitempty"`
}

func (b *batchV2) current() *UsageBatch {
	return &UsageBatch{SchemaVersion: 2, WindowStart: b.WindowStart, WindowEnd: b.WindowEnd, OrgID: b.OrgID, EdgeID: b.EdgeID, Seq: b.Seq,
		Rows: b.Rows, Budgets: b.Budgets, Settings: b.Settings}
}

func v2Of(b *UsageBatch) *batchV2 {
	out := &batchV2{SchemaVersion: 2, WindowStart: b.WindowStart, WindowEnd: b.WindowEnd, OrgID: b.OrgID, EdgeID: b.EdgeID, Seq: b.Seq,
		Rows: b.Rows, Budgets: b.Budgets, Settings: b.Settings}
	if out.Budgets == nil {
		out.Budgets = []BudgetUse{}
	}
	return out
}

// AsVersion returns b as version v carries it: for version 2, without
// memories, audit counts and instance, and with settings naming only the dimensions
// version 2 knows; for version 1, also without the rows' limited and
// budget_refused counts, budgets and settings.
func (b *UsageBatch) AsVersion(v int) *UsageBatch {
	c := *b
	c.SchemaVersion = v
	if v < 3 {
		c.Memories, c.Audit, c.Instance = nil, nil, ""
		if b.Settings != nil {
			st := *b.Settings
			st.Dimensions = make([]string, 0, len(b.Settings.Dimensions))
			for _, d := range b.Settings.Dimensions {
				if slices.Contains(dimensionsV2, d) {
					st.Dimensions = append(st.Dimensions, d)
				}
			}
			c.Settings = &st
		}
	}
	if v == 1 {
		c.Budgets, c.Settings = nil, nil
		c.Rows = make([]UsageRow, len(b.Rows))
		copy(c.Rows, b.Rows)
		for i := range c.Rows {
			c.Rows[i].Limited, c.Rows[i].BudgetRefused = 0, 0
		}
	}
	return &c
}

// Negotiate returns the newest version both this package and a control
// plane that accepts theirs (none: a control plane older than the field,
// which takes version 1 only) understand.
func Negotiate(theirs []int) int {
	best := 1
	for _, v := range theirs {
		if v > best && v <= SchemaVersion {
			best = v
		}
	}
	return best
}
