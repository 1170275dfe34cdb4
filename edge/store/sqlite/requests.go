package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/store"
)

const requestColumns = store.RequestColumns

// requestParams is the number of host parameters per inserted row.
const requestParams = 22

// maxInsertRows is the most rows one INSERT statement carries. Every
// statement execution costs a fixed amount of transpiled-C and driver work
// (statement start, reset, unbinding, a goroutine watching a context with
// a deadline): about 10 µs, as much as the row itself, so a batch goes in
// chunks of many rows. At 64 rows that cost is about 1% of the chunk's,
// and 64 rows are 1,408 parameters, far below SQLite's limit of 32,766.
const maxInsertRows = 64

// insertSizes are the row counts of the prepared INSERT statements: a
// batch goes in full chunks and its tail in at most one statement of each
// smaller power of two, so no call prepares SQL.
var insertSizes = func() []int {
	var s []int
	for n := maxInsertRows; n >= 1; n /= 2 {
		s = append(s, n)
	}
	return s
}()

// insertSQL is an INSERT into table of n rows of params parameters.
func insertSQL(table, columns string, params, n int) string {
	var b strings.Builder
	b.WriteString(`INSERT INTO ` + table + ` (` + columns + `) VALUES `)
	row := `(?` + strings.Repeat(`, ?`, params-1) + `)`
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(row)
	}
	return b.String()
}

// prepareInserts prepares the INSERT statements of insertSizes, of
// requests and of audit events, on the writer connection.
func (db *DB) prepareInserts(ctx context.Context) error {
	db.insertRequests = make(map[int]*sql.Stmt, len(insertSizes))
	db.insertAudit = make(map[int]*sql.Stmt, len(insertSizes))
	for _, n := range insertSizes {
		for _, ins := range []struct {
			stmts          map[int]*sql.Stmt
			table, columns string
			params         int
		}{
			{db.insertRequests, "requests", requestColumns, requestParams},
			{db.insertAudit, "audit_events", auditColumns, auditParams},
		} {
			stmt, err := db.write.PrepareContext(ctx, insertSQL(ins.table, ins.columns, ins.params, n)) //nolint:sqlclosecheck // kept for the store's life; DB.Close closes it
			if err != nil {
				return fmt.Errorf("insert of %d rows into %s: %w", n, ins.table, err)
			}
			ins.stmts[n] = stmt
		}
	}
	return nil
}

// InsertRequests stores a batch of request records in one transaction:
// all of them or, on error, none. A record of an unknown org, or whose id
// is taken, fails the batch with edge.ErrConflict.
func (db *DB) InsertRequests(ctx context.Context, recs []edge.RequestRecord) error {
	if len(recs) == 0 {
		return nil
	}
	for i := range recs {
		if err := recs[i].Check(); err != nil {
			return fmt.Errorf("insert requests: record %d: %w", i, err)
		}
	}
	args := requestArgs{args: make([]any, 0, requestParams*min(len(recs), maxInsertRows))}
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		for rest := recs; len(rest) > 0; {
			n := chunkSize(len(rest))
			chunk := rest[:n]
			rest = rest[n:]
			args.args = args.args[:0]
			for i := range chunk {
				args.add(&chunk[i])
			}
			//nolint:sqlclosecheck // a transaction's statement closes with the transaction
			if _, err := tx.StmtContext(ctx, db.insertRequests[n]).ExecContext(ctx, args.args...); err != nil {
				return db.blame(ctx, tx, chunk, err)
			}
		}
		return nil
	})
	return wrap(fmt.Sprintf("insert %d requests", len(recs)), err)
}

// chunkSize is the number of rows of the next INSERT for n pending rows:
// the largest of insertSizes that is at most n.
func chunkSize(n int) int {
	for _, s := range insertSizes {
		if s <= n {
			return s
		}
	}
	panic("unreachable: insertSizes ends in 1")
}

// blame names the record that failed a multi-row INSERT, as a one-row
// INSERT would have, by retrying the chunk's rows one at a time inside tx:
// SQLite undid the failed statement, not the transaction. Only constraint
// failures are retried; any other error (a canceled context, a busy
// database) is returned as it is. The caller rolls tx back either way.
func (db *DB) blame(ctx context.Context, tx *sql.Tx, chunk []edge.RequestRecord, err error) error {
	if len(chunk) == 1 {
		return fmt.Errorf("record %q: %w", chunk[0].ID, err)
	}
	if kindOf(err) == nil {
		return fmt.Errorf("records %q to %q: %w", chunk[0].ID, chunk[len(chunk)-1].ID, err)
	}
	stmt := tx.StmtContext(ctx, db.insertRequests[1]) //nolint:sqlclosecheck // closes with the transaction
	var args requestArgs
	for i := range chunk {
		args.args = args.args[:0]
		args.add(&chunk[i])
		if _, rerr := stmt.ExecContext(ctx, args.args...); rerr != nil {
			return fmt.Errorf("record %q: %w", chunk[i].ID, rerr)
		}
	}
	return fmt.Errorf("records %q to %q: %w", chunk[0].ID, chunk[len(chunk)-1].ID, err)
}

// requestArgs turns records into INSERT arguments. They are driver values
// already (int64, not int; nil, not a Valuer), so database/sql passes them
// on without converting each one. Putting a string in an interface
// allocates, and a batch mostly repeats its org, key, provider, endpoint,
// model and cache status, so those reuse the previous row's interface
// when the value is the same.
type requestArgs struct {
	args []any
	last [6]string
	box  [6]any
}

// reuse returns s in an interface, the one of column slot i of the
// previous row if its value is the same.
func (a *requestArgs) reuse(i int, s string) any {
	if a.box[i] == nil || a.last[i] != s {
		a.last[i], a.box[i] = s, s
	}
	return a.box[i]
}

// add appends r's column values, in requestColumns order.
func (a *requestArgs) add(r *edge.RequestRecord) {
	var cost any
	if r.CostKnown {
		cost = r.CostNanoUSD
	}
	a.args = append(a.args,
		r.ID, a.reuse(0, r.OrgID), r.Time.UnixNano(), a.reuse(1, r.KeyID),
		a.reuse(2, string(r.Provider)), a.reuse(3, r.Endpoint), a.reuse(4, r.Model), r.Stream,
		countValue(r.Usage.Input), countValue(r.Usage.CachedInput), countValue(r.Usage.CacheWrite),
		countValue(r.Usage.Output), countValue(r.Usage.Reasoning),
		cost, r.SavedNanoUSD,
		int64(r.Latency), int64(r.UpstreamLatency),
		int64(r.Status), a.reuse(5, string(r.Cache)), r.Fingerprint, r.MemoryID, r.MemoryTokensEstimate)
}

// countValue stores an unknown count as NULL, never as zero.
func countValue(c edge.Count) any {
	if !c.Known {
		return nil
	}
	return c.N
}

// Requests returns up to limit of the org's records at or after since,
// ordered by time, then id.
func (db *DB) Requests(ctx context.Context, orgID string, since time.Time, limit int) ([]edge.RequestRecord, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("list requests: limit %d: %w", limit, edge.ErrInvalid)
	}
	var from int64 // the zero time means from the start
	if !since.IsZero() {
		from = since.UnixNano()
	}
	rows, err := db.read.QueryContext(ctx,
		`SELECT `+requestColumns+` FROM requests
		 WHERE org_id = ? AND at >= ? ORDER BY at, id LIMIT ?`, orgID, from, limit)
	if err != nil {
		return nil, wrap("list requests", err)
	}
	defer rows.Close()
	var out []edge.RequestRecord
	for rows.Next() {
		var (
			r                                            edge.RequestRecord
			at, latency, upstream                        int64
			provider, cache                              string
			input, cachedInput, cacheWrite, output, reas sql.NullInt64
			cost                                         sql.NullInt64
		)
		err := rows.Scan(&r.ID, &r.OrgID, &at, &r.KeyID, &provider, &r.Endpoint, &r.Model, &r.Stream,
			&input, &cachedInput, &cacheWrite, &output, &reas,
			&cost, &r.SavedNanoUSD, &latency, &upstream,
			&r.Status, &cache, &r.Fingerprint, &r.MemoryID, &r.MemoryTokensEstimate)
		if err != nil {
			return nil, wrap("list requests", err)
		}
		r.Time = time.Unix(0, at).UTC()
		r.Provider = edge.Provider(provider)
		r.Cache = edge.CacheStatus(cache)
		r.Usage = edge.Usage{
			Input:       fromCount(input),
			CachedInput: fromCount(cachedInput),
			CacheWrite:  fromCount(cacheWrite),
			Output:      fromCount(output),
			Reasoning:   fromCount(reas),
		}
		r.CostNanoUSD, r.CostKnown = cost.Int64, cost.Valid
		r.Latency = time.Duration(latency)
		r.UpstreamLatency = time.Duration(upstream)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("list requests", err)
	}
	return out, nil
}

// fromCount is the inverse of countValue.
func fromCount(n sql.NullInt64) edge.Count { return edge.Count{N: n.Int64, Known: n.Valid} }

// DeleteRequestsBefore implements edge.Store.
func (db *DB) DeleteRequestsBefore(ctx context.Context, orgID string, before time.Time, limit int) (int64, error) {
	if limit <= 0 {
		return 0, fmt.Errorf("delete requests: limit %d: %w", limit, edge.ErrInvalid)
	}
	res, err := db.write.ExecContext(ctx, `DELETE FROM requests WHERE rowid IN
		(SELECT rowid FROM requests WHERE org_id = ? AND at < ? ORDER BY at LIMIT ?)`, orgID, before.UnixNano(), limit)
	if err != nil {
		return 0, wrap("delete requests", err)
	}
	n, err := res.RowsAffected()
	return n, wrap("delete requests", err)
}
