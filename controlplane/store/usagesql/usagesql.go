// Package usagesql holds what the SQL stores share about usage tables:
// column names and the mapping between wire rows, totals and columns, so
// the SQLite and Postgres stores cannot disagree on them.
package usagesql

import (
	"fmt"
	"strings"
	"sync"

	"github.com/persiv/codex/controlplane"
	"github.com/persiv/codex/shared/wire"
)

// KeyColumns are the key columns of a usage table after org_id and ts.
var KeyColumns = []string{"edge_id", "workspace", "provider", "model", "key_ref", "cache_status", "status_class"}

// MetricColumns are the summed columns of a usage table, in Metrics order.
var MetricColumns = func() []string {
	cols := []string{"requests", "input", "input_unknown", "cached_input", "cached_input_unknown",
		"cache_write", "cache_write_unknown", "output", "output_unknown", "reasoning", "reasoning_unknown",
		"cost_nano_usd", "cost_unknown", "saved_nano_usd", "limited", "budget_refused"}
	for i := 0; i < wire.LatencyBuckets; i++ {
		cols = append(cols, fmt.Sprintf("lat_%02d", i))
	}
	return cols
}()

// Metrics returns a row's metric values in MetricColumns order.
func Metrics(r *wire.UsageRow) []any {
	v := []any{r.Requests, r.Input.Sum, r.Input.Unknown, r.CachedInput.Sum, r.CachedInput.Unknown,
		r.CacheWrite.Sum, r.CacheWrite.Unknown, r.Output.Sum, r.Output.Unknown, r.Reasoning.Sum, r.Reasoning.Unknown,
		r.CostNanoUSD, r.CostUnknown, r.SavedNanoUSD, r.Limited, r.BudgetRefused}
	for _, n := range r.LatencyMS {
		v = append(v, n)
	}
	return v
}

// TotalsDest returns scan destinations for MetricColumns into t.
func TotalsDest(t *controlplane.Totals) []any {
	d := []any{&t.Requests, &t.Input.Sum, &t.Input.Unknown, &t.CachedInput.Sum, &t.CachedInput.Unknown,
		&t.CacheWrite.Sum, &t.CacheWrite.Unknown, &t.Output.Sum, &t.Output.Unknown, &t.Reasoning.Sum, &t.Reasoning.Unknown,
		&t.CostNanoUSD, &t.CostUnknown, &t.SavedNanoUSD, &t.Limited, &t.BudgetRefused}
	for i := range t.LatencyMS {
		d = append(d, &t.LatencyMS[i])
	}
	return d
}

// Table returns the usage table holding a resolution.
func Table(step int64) (string, error) {
	switch step {
	case int64(controlplane.Minute):
		return "usage_minute", nil
	case int64(controlplane.Hour):
		return "usage_hour", nil
	case int64(controlplane.Day):
		return "usage_day", nil
	}
	return "", fmt.Errorf("%w: step must be a minute, an hour or a day", controlplane.ErrInvalid)
}

// ChunkRows bounds the rows of one multi-row upsert, keeping its
// parameters (39 a row) under SQLite's and Postgres's limits.
const ChunkRows = 500

// Upsert returns an INSERT … ON CONFLICT statement adding the metrics of n
// rows to table, with placeholders made by ph (1-based). The rows' keys
// must be distinct, as a valid batch's are.
func Upsert(table string, n int, ph func(i int) string) string {
	cols := append(append([]string{"org_id", "ts"}, KeyColumns...), MetricColumns...)
	var b strings.Builder
	fmt.Fprintf(&b, "INSERT INTO %s (%s) VALUES ", table, strings.Join(cols, ", "))
	p := 0
	for r := 0; r < n; r++ {
		if r > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		for i := range cols {
			if i > 0 {
				b.WriteString(", ")
			}
			p++
			b.WriteString(ph(p))
		}
		b.WriteByte(')')
	}
	fmt.Fprintf(&b, " ON CONFLICT (org_id, ts, %s) DO UPDATE SET ", strings.Join(KeyColumns, ", "))
	for i, c := range MetricColumns {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s = %s.%s + excluded.%s", c, table, c, c)
	}
	return b.String()
}

// RowArgs appends the parameters of one row of an upsert to args.
func RowArgs(args []any, orgID string, ts any, edgeID string, r *wire.UsageRow) []any {
	args = append(args, orgID, ts, edgeID, r.Workspace, r.Provider, r.Model, r.KeyRef, string(r.CacheStatus), string(r.StatusClass))
	return append(args, Metrics(r)...)
}

// Statements is a cache of upsert statements by table and row count.
type Statements struct {
	ph func(int) string
	m  sync.Map // stmtKey → string
}

type stmtKey struct {
	table string
	n     int
}

// NewStatements returns a cache for a placeholder style.
func NewStatements(ph func(int) string) *Statements { return &Statements{ph: ph} }

// Upsert returns the cached statement for n rows of table.
func (s *Statements) Upsert(table string, n int) string {
	k := stmtKey{table, n}
	if v, ok := s.m.Load(k); ok {
		return v.(string)
	}
	q := Upsert(table, n, s.ph)
	s.m.Store(k, q)
	return q
}

// Query is a usage query compiled to SQL: bucket expression and grouped
// dimensions are validated, so only values travel as parameters.
type Query struct {
	SQL  string
	Args []any
	Dims []controlplane.Dimension
}

// Build compiles q for a table. bucket is the SQL expression of a row's
// bucket start; from and to are the bound values of ts; ph makes the
// placeholder of the n-th parameter (1-based).
func Build(q controlplane.UsageQuery, table, bucket string, from, to any, ph func(int) string) (Query, error) {
	out := Query{Args: []any{q.OrgID, from, to}}
	seen := map[controlplane.Dimension]bool{}
	for _, d := range q.GroupBy {
		if !d.Valid() {
			return Query{}, fmt.Errorf("%w: unknown dimension", controlplane.ErrInvalid)
		}
		if !seen[d] {
			seen[d] = true
			out.Dims = append(out.Dims, d)
		}
	}
	var where strings.Builder
	fmt.Fprintf(&where, "org_id = %s AND ts >= %s AND ts < %s", ph(1), ph(2), ph(3))
	for _, d := range controlplane.Dimensions { // fixed order: stable SQL
		v, ok := q.Where[d]
		if !ok {
			continue
		}
		out.Args = append(out.Args, v)
		fmt.Fprintf(&where, " AND %s = %s", d, ph(len(out.Args)))
	}
	for d := range q.Where {
		if !d.Valid() {
			return Query{}, fmt.Errorf("%w: unknown dimension", controlplane.ErrInvalid)
		}
	}
	sel := []string{bucket + " AS bucket"}
	group := []string{"bucket"}
	if q.Whole {
		sel, group = []string{"MIN(" + bucket + ") AS bucket"}, nil
	}
	for _, d := range out.Dims {
		sel = append(sel, string(d))
		group = append(group, string(d))
	}
	for _, c := range MetricColumns {
		sel = append(sel, "CAST(SUM("+c+") AS BIGINT)")
	}
	if len(group) == 0 {
		// An aggregate without GROUP BY yields a row even over no rows.
		out.SQL = fmt.Sprintf("SELECT %s FROM %s WHERE %s HAVING COUNT(*) > 0", strings.Join(sel, ", "), table, where.String())
		return out, nil
	}
	out.SQL = fmt.Sprintf("SELECT %s FROM %s WHERE %s GROUP BY %s ORDER BY %s",
		strings.Join(sel, ", "), table, where.String(), strings.Join(group, ", "), strings.Join(group, ", "))
	return out, nil
}
