package wire

import (
	"fmt"
	"slices"
	"time"
)

// Charset is a bounded identifier syntax: a first byte from First, then
// up to MaxLen-1 bytes from Rest. ASCII only, no spaces: identifiers, not
// text.
type Charset struct {
	MaxLen      int
	First, Rest string // allowed bytes, in regexp class syntax order
	pattern     string
	first, rest [256]bool
}

func newCharset(maxLen int, first, rest, pattern string) *Charset {
	c := &Charset{MaxLen: maxLen, First: first, Rest: rest, pattern: pattern}
	expand := func(set string, into *[256]bool) {
		for i := 0; i < len(set); i++ {
			if i+2 < len(set) && set[i+1] == '-' {
				for b := set[i]; b <= set[i+2]; b++ {
					into[b] = true
				}
				i += 2
				continue
			}
			into[set[i]] = true
		}
	}
	expand(first, &c.first)
	expand(rest, &c.rest)
	return c
}

// Valid reports whether s is a non-empty identifier of this charset.
func (c *Charset) Valid(s string) bool {
	if len(s) == 0 || len(s) > c.MaxLen || !c.first[s[0]] {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !c.rest[s[i]] {
			return false
		}
	}
	return true
}

// Pattern is the charset as a JSON Schema (ECMA 262) regular expression.
func (c *Charset) Pattern() string { return c.pattern }

// The identifier syntaxes of the wire contract. A '-' at the end of a
// set is literal.
var (
	// IDChars: org and edge ids. They are NATS subject tokens, so never
	// '.', '*' or '>'.
	IDChars = newCharset(64, "a-z0-9", "a-z0-9_-", `^[a-z0-9][a-z0-9_-]{0,63}$`)
	// LabelChars: workspace and key reference, pseudonyms by default.
	LabelChars = newCharset(64, "A-Za-z0-9", "A-Za-z0-9._:-", `^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$`)
	// ModelChars: provider model names such as "gpt-4o-2024-08-06" or
	// "ft:gpt-4o-mini:acme::abc123".
	ModelChars = newCharset(128, "A-Za-z0-9", "A-Za-z0-9._:/@+-", `^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}$`)
	// ProviderChars: provider names such as "openai".
	ProviderChars = newCharset(32, "a-z", "a-z0-9_-", `^[a-z][a-z0-9_-]{0,31}$`)
	// MemoryNameChars: memory names, as the edge accepts them.
	MemoryNameChars = newCharset(64, "A-Za-z0-9._-", "A-Za-z0-9._-", `^[A-Za-z0-9._-]{1,64}$`)
	// InstanceChars: instance ids, lowercase hex; ValidInstance also
	// requires exactly InstanceLen of them.
	InstanceChars = newCharset(InstanceLen, "0-9a-f", "0-9a-f", `^[0-9a-f]{32}$`)
)

func invalid(field, rule string) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalid, field, rule)
}

// Validate checks every bound and consistency rule of the contract.
func (b *UsageBatch) Validate() error {
	if !slices.Contains(SchemaVersions, b.SchemaVersion) {
		return invalid("schema_version", "unsupported version")
	}
	if err := checkTime("window_start", b.WindowStart); err != nil {
		return err
	}
	if err := checkTime("window_end", b.WindowEnd); err != nil {
		return err
	}
	if !b.WindowEnd.After(b.WindowStart) {
		return invalid("window_end", "not after window_start")
	}
	if b.WindowEnd.Sub(b.WindowStart) > MaxWindow {
		return invalid("window_end", "window longer than "+MaxWindow.String())
	}
	if !IDChars.Valid(b.OrgID) {
		return invalid("org_id", "not an id")
	}
	if !IDChars.Valid(b.EdgeID) {
		return invalid("edge_id", "not an id")
	}
	if b.Seq < 1 || b.Seq > MaxCount {
		return invalid("seq", "out of range")
	}
	if b.Instance != "" && b.SchemaVersion < 3 {
		return invalid("instance", "not before version 3")
	}
	if b.Instance != "" && !ValidInstance(b.Instance) {
		return invalid("instance", "not an instance id")
	}
	if b.Rows == nil {
		return invalid("rows", "missing")
	}
	if b.Settings != nil {
		if err := b.Settings.validate(b.SchemaVersion); err != nil {
			return err
		}
	}
	if len(b.Rows) > MaxRows {
		return invalid("rows", "too many rows")
	}
	seen := make(map[RowKey]struct{}, len(b.Rows))
	for i := range b.Rows {
		r := &b.Rows[i]
		if err := r.validate(); err != nil {
			return fmt.Errorf("rows[%d]: %w", i, err)
		}
		k := r.Key()
		if _, dup := seen[k]; dup {
			return fmt.Errorf("rows[%d]: %w", i, invalid("key", "duplicate row key"))
		}
		seen[k] = struct{}{}
		if b.SchemaVersion == 1 && (r.Limited != 0 || r.BudgetRefused != 0) {
			return fmt.Errorf("rows[%d]: %w", i, invalid("limited", "not in version 1"))
		}
	}
	if b.SchemaVersion == 1 && len(b.Budgets) > 0 {
		return invalid("budgets", "not in version 1")
	}
	if len(b.Budgets) > MaxBudgets {
		return invalid("budgets", "too many budgets")
	}
	type budgetKey struct{ ws, key, period string }
	seenB := make(map[budgetKey]struct{}, len(b.Budgets))
	for i, u := range b.Budgets {
		switch {
		case !LabelChars.Valid(u.Workspace):
			return fmt.Errorf("budgets[%d]: %w", i, invalid("workspace", "not a label"))
		case !LabelChars.Valid(u.KeyRef):
			return fmt.Errorf("budgets[%d]: %w", i, invalid("key_ref", "not a label"))
		case u.Period != "day" && u.Period != "month":
			return fmt.Errorf("budgets[%d]: %w", i, invalid("period", "not day or month"))
		case u.CapNanoUSD < 1 || u.CapNanoUSD > MaxCount:
			return fmt.Errorf("budgets[%d]: %w", i, invalid("cap_nano_usd", "out of range"))
		case u.SpentNanoUSD < 0 || u.SpentNanoUSD > MaxCount:
			return fmt.Errorf("budgets[%d]: %w", i, invalid("spent_nano_usd", "out of range"))
		}
		k := budgetKey{u.Workspace, u.KeyRef, u.Period}
		if _, dup := seenB[k]; dup {
			return fmt.Errorf("budgets[%d]: %w", i, invalid("key", "duplicate budget"))
		}
		seenB[k] = struct{}{}
	}
	if b.SchemaVersion < 3 && len(b.Memories) > 0 {
		return invalid("memories", "not before version 3")
	}
	if b.SchemaVersion < 3 && len(b.Audit) > 0 {
		return invalid("audit", "not before version 3")
	}
	if err := validateMemories(b.Memories); err != nil {
		return err
	}
	return validateAudit(b.Audit)
}

func validateMemories(ms []MemoryUse) error {
	if len(ms) > MaxMemories {
		return invalid("memories", "too many memories")
	}
	type memKey struct {
		ws, key, name string
		version       int64
	}
	seen := make(map[memKey]struct{}, len(ms))
	for i, m := range ms {
		var err error
		switch {
		case !LabelChars.Valid(m.Workspace):
			err = invalid("workspace", "not a label")
		case !LabelChars.Valid(m.KeyRef):
			err = invalid("key_ref", "not a label")
		case !MemoryNameChars.Valid(m.Name):
			err = invalid("name", "not a memory name")
		case m.Version < 0 || m.Version > MaxCount:
			err = invalid("version", "out of range")
		case m.Version == 0 && m.Name != Other:
			err = invalid("version", "0 is for a withheld memory only")
		case m.Requests < 1 || m.Requests > MaxCount:
			err = invalid("requests", "out of range")
		case m.Tokens < 0 || m.Tokens > MaxCount:
			err = invalid("tokens", "out of range")
		case m.Estimated < 0 || m.Estimated > m.Requests:
			err = invalid("estimated", "out of range (0..requests)")
		}
		if err != nil {
			return fmt.Errorf("memories[%d]: %w", i, err)
		}
		k := memKey{m.Workspace, m.KeyRef, m.Name, m.Version}
		if _, dup := seen[k]; dup {
			return fmt.Errorf("memories[%d]: %w", i, invalid("key", "duplicate memory"))
		}
		seen[k] = struct{}{}
	}
	return nil
}

func validateAudit(as []AuditCount) error {
	if len(as) > MaxAuditCounts {
		return invalid("audit", "too many counts")
	}
	type auditKey struct{ ws, level string }
	seen := make(map[auditKey]struct{}, len(as))
	for i, a := range as {
		var err error
		switch {
		case !LabelChars.Valid(a.Workspace):
			err = invalid("workspace", "not a label")
		case !slices.Contains(AuditLevels, a.Level):
			err = invalid("level", "not an audit level")
		case a.Records < 1 || a.Records > MaxCount:
			err = invalid("records", "out of range")
		}
		if err != nil {
			return fmt.Errorf("audit[%d]: %w", i, err)
		}
		k := auditKey{a.Workspace, a.Level}
		if _, dup := seen[k]; dup {
			return fmt.Errorf("audit[%d]: %w", i, invalid("key", "duplicate audit count"))
		}
		seen[k] = struct{}{}
	}
	return nil
}

func checkTime(field string, t time.Time) error {
	if _, off := t.Zone(); off != 0 {
		return invalid(field, "not UTC")
	}
	if t.Before(minTime) || !t.Before(maxTime) {
		return invalid(field, "out of range")
	}
	return nil
}

func (r *UsageRow) validate() error {
	switch {
	case !LabelChars.Valid(r.Workspace):
		return invalid("workspace", "not a label")
	case !ProviderChars.Valid(r.Provider):
		return invalid("provider", "not a provider name")
	case !ModelChars.Valid(r.Model):
		return invalid("model", "not a model name")
	case !LabelChars.Valid(r.KeyRef):
		return invalid("key_ref", "not a label")
	case !validCache(r.CacheStatus):
		return invalid("cache_status", "unknown status")
	case !validClass(r.StatusClass):
		return invalid("status_class", "unknown class")
	}
	if r.Requests < 1 || r.Requests > MaxCount {
		return invalid("requests", "out of range")
	}
	for _, t := range []struct {
		name string
		v    Tokens
	}{{"input", r.Input}, {"cached_input", r.CachedInput}, {"cache_write", r.CacheWrite}, {"output", r.Output}, {"reasoning", r.Reasoning}} {
		if t.v.Sum < 0 || t.v.Sum > MaxCount {
			return invalid(t.name+".sum", "out of range")
		}
		if t.v.Unknown < 0 || t.v.Unknown > r.Requests {
			return invalid(t.name+".unknown", "out of range (0..requests)")
		}
	}
	if r.CostNanoUSD < 0 || r.CostNanoUSD > MaxCount {
		return invalid("cost_nano_usd", "out of range")
	}
	if r.CostUnknown < 0 || r.CostUnknown > r.Requests {
		return invalid("cost_unknown", "out of range (0..requests)")
	}
	if r.SavedNanoUSD < 0 || r.SavedNanoUSD > MaxCount {
		return invalid("saved_nano_usd", "out of range")
	}
	if r.Limited < 0 || r.Limited > r.Requests {
		return invalid("limited", "out of range (0..requests)")
	}
	if r.BudgetRefused < 0 || r.BudgetRefused > r.Requests {
		return invalid("budget_refused", "out of range (0..requests)")
	}
	var total int64
	for _, n := range r.LatencyMS {
		if n < 0 || n > r.Requests {
			return invalid("latency_ms", "bucket out of range (0..requests)")
		}
		total += n
	}
	if total != r.Requests {
		return invalid("latency_ms", "buckets do not add up to requests")
	}
	return nil
}

// MaxHeartbeatS bounds Settings.HeartbeatS: a day.
const MaxHeartbeatS = 24 * 60 * 60

func (st *Settings) validate(version int) error {
	if st.Dimensions == nil {
		return invalid("dimensions", "missing")
	}
	known := Dimensions
	if version < 3 {
		known = dimensionsV2
	}
	seen := map[string]bool{}
	for _, d := range st.Dimensions {
		if seen[d] || !slices.Contains(known, d) {
			return invalid("dimensions", "unknown or repeated dimension")
		}
		seen[d] = true
	}
	if st.MinCount < 0 || st.MinCount > MaxCount {
		return invalid("min_count", "out of range")
	}
	if st.HeartbeatS < 0 || st.HeartbeatS > MaxHeartbeatS {
		return invalid("heartbeat_s", "out of range")
	}
	return nil
}

func validCache(c CacheStatus) bool {
	for _, v := range CacheStatuses {
		if c == v {
			return true
		}
	}
	return false
}

func validClass(c StatusClass) bool {
	for _, v := range StatusClasses {
		if c == v {
			return true
		}
	}
	return false
}
