package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/persiv/codex/edge"
)

const requestColumns = `id, org_id, at, key_id, provider, endpoint, model, stream,
	input_tokens, cached_input_tokens, cache_write_tokens, output_tokens, reasoning_tokens,
	cost_nano_usd, saved_nano_usd, latency_ns, upstream_latency_ns,
	status, cache, fingerprint, memory_id`

const insertRequestSQL = `INSERT INTO requests (` + requestColumns + `)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// InsertRequests stores a batch of request records in one transaction:
// all of them or, on error, none. A record of an unknown org, or whose id
// is taken, fails the batch with edge.ErrConflict.
func (db *DB) InsertRequests(ctx context.Context, recs []edge.RequestRecord) error {
	if len(recs) == 0 {
		return nil
	}
	for i := range recs {
		if recs[i].ID == "" || recs[i].OrgID == "" || recs[i].Time.IsZero() {
			return fmt.Errorf("insert requests: record %d: id, org id and time are required: %w", i, edge.ErrInvalid)
		}
	}
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		stmt := tx.StmtContext(ctx, db.insertRequest)
		defer stmt.Close()
		for i := range recs {
			r := &recs[i]
			_, err := stmt.ExecContext(ctx,
				r.ID, r.OrgID, r.Time.UnixNano(), r.KeyID, string(r.Provider), r.Endpoint, r.Model, r.Stream,
				count(r.Usage.Input), count(r.Usage.CachedInput), count(r.Usage.CacheWrite),
				count(r.Usage.Output), count(r.Usage.Reasoning),
				sql.NullInt64{Int64: r.CostNanoUSD, Valid: r.CostKnown}, r.SavedNanoUSD,
				int64(r.Latency), int64(r.UpstreamLatency),
				r.Status, string(r.Cache), r.Fingerprint, r.MemoryID)
			if err != nil {
				return fmt.Errorf("record %q: %w", r.ID, err)
			}
		}
		return nil
	})
	return wrap(fmt.Sprintf("insert %d requests", len(recs)), err)
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
			&r.Status, &cache, &r.Fingerprint, &r.MemoryID)
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

// count stores an unknown count as NULL, never as zero.
func count(c edge.Count) sql.NullInt64 { return sql.NullInt64{Int64: c.N, Valid: c.Known} }

func fromCount(n sql.NullInt64) edge.Count { return edge.Count{N: n.Int64, Known: n.Valid} }
