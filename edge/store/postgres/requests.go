package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/store"
)

const requestColumns = store.RequestColumns

// insertRequestsSQL inserts one org's records in one statement: each column
// travels as one array parameter and unnest turns them back into rows.
// (COPY FROM is not allowed on a table under row-level security.)
const insertRequestsSQL = `INSERT INTO requests (` + requestColumns + `)
	SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::text[],
		$6::text[], $7::text[], $8::boolean[],
		$9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[], $13::bigint[],
		$14::bigint[], $15::bigint[], $16::bigint[], $17::bigint[],
		$18::integer[], $19::text[], $20::text[], $21::text[], $22::bigint[])`

// requestColumnsBuf holds one org's records column by column.
type requestColumnsBuf struct {
	id, orgID, keyID, provider, endpoint, model []string
	at                                          []time.Time
	stream                                      []bool
	input, cachedInput, cacheWrite, output      []*int64
	reasoning, cost                             []*int64
	saved, latency, upstream                    []int64
	status                                      []int32
	cache, fingerprint, memoryID                []string
	memoryTokens                                []int64
}

func (c *requestColumnsBuf) add(r *edge.RequestRecord) {
	c.id = append(c.id, r.ID)
	c.orgID = append(c.orgID, r.OrgID)
	c.at = append(c.at, r.Time)
	c.keyID = append(c.keyID, r.KeyID)
	c.provider = append(c.provider, string(r.Provider))
	c.endpoint = append(c.endpoint, r.Endpoint)
	c.model = append(c.model, r.Model)
	c.stream = append(c.stream, r.Stream)
	c.input = append(c.input, count(r.Usage.Input))
	c.cachedInput = append(c.cachedInput, count(r.Usage.CachedInput))
	c.cacheWrite = append(c.cacheWrite, count(r.Usage.CacheWrite))
	c.output = append(c.output, count(r.Usage.Output))
	c.reasoning = append(c.reasoning, count(r.Usage.Reasoning))
	cost := count(edge.Count{N: r.CostNanoUSD, Known: r.CostKnown})
	c.cost = append(c.cost, cost)
	c.saved = append(c.saved, r.SavedNanoUSD)
	c.latency = append(c.latency, int64(r.Latency))
	c.upstream = append(c.upstream, int64(r.UpstreamLatency))
	c.status = append(c.status, int32(r.Status))
	c.cache = append(c.cache, string(r.Cache))
	c.fingerprint = append(c.fingerprint, r.Fingerprint)
	c.memoryID = append(c.memoryID, r.MemoryID)
	c.memoryTokens = append(c.memoryTokens, r.MemoryTokensEstimate)
}

func (c *requestColumnsBuf) args() []any {
	return []any{c.id, c.orgID, c.at, c.keyID, c.provider, c.endpoint, c.model, c.stream,
		c.input, c.cachedInput, c.cacheWrite, c.output, c.reasoning,
		c.cost, c.saved, c.latency, c.upstream,
		c.status, c.cache, c.fingerprint, c.memoryID, c.memoryTokens}
}

// InsertRequests stores a batch of request records in one transaction:
// all of them or, on error, none. The batch may mix orgs (the writer
// batches across the edge): each org's records go in one multi-row insert
// under that org's row-level security setting. A record of an unknown org,
// or whose id is taken, fails the batch with edge.ErrConflict, with one
// exception that only a network store needs: when the COMMIT of a batch
// got no answer (the connection dropped) and it did happen, retrying that
// very batch succeeds instead of failing for ever, so the metadata writer
// neither loses nor duplicates it.
func (db *DB) InsertRequests(ctx context.Context, recs []edge.RequestRecord) error {
	if len(recs) == 0 {
		return nil
	}
	var (
		order  []string // orgs in order of first appearance
		perOrg = map[string]*requestColumnsBuf{}
	)
	for i := range recs {
		r := &recs[i]
		if err := r.Check(); err != nil {
			return fmt.Errorf("insert requests: record %d: %w", i, err)
		}
		c := perOrg[r.OrgID]
		if c == nil {
			c = &requestColumnsBuf{}
			perOrg[r.OrgID] = c
			order = append(order, r.OrgID)
		}
		c.add(r)
	}
	err := db.insertRequests(ctx, order, perOrg)
	if errors.Is(err, errCommitUncertain) {
		db.markUncertain(recs)
	} else if isUniqueViolation(err) {
		// The writer retries a failed batch as it was. If this is the
		// retry of a batch whose commit went unanswered and every record
		// is stored, that commit happened: the batch is stored once.
		if ok, cerr := db.replayOfUncertain(ctx, recs, order); cerr == nil && ok {
			return nil
		}
	}
	if err == nil {
		db.forgetUncertain(recs)
	}
	return wrap(fmt.Sprintf("insert %d requests", len(recs)), err)
}

func (db *DB) insertRequests(ctx context.Context, order []string, perOrg map[string]*requestColumnsBuf) error {
	return db.inTx(ctx, func(tx pgx.Tx) error {
		for _, org := range order {
			if err := setOrg(ctx, tx, org); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, insertRequestsSQL, perOrg[org].args()...); err != nil {
				return fmt.Errorf("records of org %q: %w", org, err)
			}
		}
		return nil
	})
}

func isUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

func ids(recs []edge.RequestRecord) []string {
	out := make([]string, len(recs))
	for i := range recs {
		out[i] = recs[i].ID
	}
	return out
}

// markUncertain remembers a batch whose commit went unanswered. Only the
// last few are kept: the writer retries one batch at a time.
func (db *DB) markUncertain(recs []edge.RequestRecord) {
	db.uncertainMu.Lock()
	defer db.uncertainMu.Unlock()
	if db.uncertain == nil || len(db.uncertain) >= 16 {
		db.uncertain = map[string][]string{}
	}
	db.uncertain[recs[0].ID] = ids(recs)
}

func (db *DB) forgetUncertain(recs []edge.RequestRecord) {
	db.uncertainMu.Lock()
	defer db.uncertainMu.Unlock()
	delete(db.uncertain, recs[0].ID)
}

// replayOfUncertain reports whether recs is exactly a batch whose commit
// went unanswered and whose records are all stored now. Any other batch
// with a taken id stays a conflict, as in every store.
func (db *DB) replayOfUncertain(ctx context.Context, recs []edge.RequestRecord, order []string) (bool, error) {
	db.uncertainMu.Lock()
	want, ok := db.uncertain[recs[0].ID]
	db.uncertainMu.Unlock()
	if !ok || !slices.Equal(want, ids(recs)) {
		return false, nil
	}
	perOrg := map[string][]string{}
	for i := range recs {
		perOrg[recs[i].OrgID] = append(perOrg[recs[i].OrgID], recs[i].ID)
	}
	stored := 0
	for _, org := range order {
		var n int
		err := db.inOrg(ctx, org, func(tx pgx.Tx) error {
			return tx.QueryRow(ctx, `SELECT count(*) FROM requests WHERE org_id = $1 AND id = ANY($2)`, org, perOrg[org]).Scan(&n)
		})
		if err != nil {
			return false, err
		}
		stored += n
	}
	if stored != len(recs) {
		return false, nil
	}
	db.forgetUncertain(recs)
	return true, nil
}

// Requests returns up to limit of the org's records at or after since,
// ordered by time, then id.
func (db *DB) Requests(ctx context.Context, orgID string, since time.Time, limit int) ([]edge.RequestRecord, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("list requests: limit %d: %w", limit, edge.ErrInvalid)
	}
	var out []edge.RequestRecord
	err := db.inOrg(ctx, orgID, func(tx pgx.Tx) error {
		// The zero time means from the start.
		rows, err := tx.Query(ctx,
			`SELECT `+requestColumns+` FROM requests
			 WHERE org_id = $1 AND ($2::timestamptz IS NULL OR at >= $2) ORDER BY at, id LIMIT $3`,
			orgID, tsOrNil(since), limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				r                                            edge.RequestRecord
				latency, upstream                            int64
				provider, cache                              string
				input, cachedInput, cacheWrite, output, reas *int64
				cost                                         *int64
				status                                       int32
			)
			err := rows.Scan(&r.ID, &r.OrgID, &r.Time, &r.KeyID, &provider, &r.Endpoint, &r.Model, &r.Stream,
				&input, &cachedInput, &cacheWrite, &output, &reas,
				&cost, &r.SavedNanoUSD, &latency, &upstream,
				&status, &cache, &r.Fingerprint, &r.MemoryID, &r.MemoryTokensEstimate)
			if err != nil {
				return err
			}
			r.Time = r.Time.UTC()
			r.Provider = edge.Provider(provider)
			r.Cache = edge.CacheStatus(cache)
			r.Usage = edge.Usage{
				Input:       fromCount(input),
				CachedInput: fromCount(cachedInput),
				CacheWrite:  fromCount(cacheWrite),
				Output:      fromCount(output),
				Reasoning:   fromCount(reas),
			}
			if cost != nil {
				r.CostNanoUSD, r.CostKnown = *cost, true
			}
			r.Latency = time.Duration(latency)
			r.UpstreamLatency = time.Duration(upstream)
			r.Status = int(status)
			out = append(out, r)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, wrap("list requests", err)
	}
	return out, nil
}

// count stores an unknown count as NULL, never as zero.
func count(c edge.Count) *int64 {
	if !c.Known {
		return nil
	}
	n := c.N
	return &n
}

func fromCount(n *int64) edge.Count {
	if n == nil {
		return edge.Count{}
	}
	return edge.Known(*n)
}

// DeleteRequestsBefore implements edge.Store.
func (db *DB) DeleteRequestsBefore(ctx context.Context, orgID string, before time.Time, limit int) (int64, error) {
	if limit <= 0 {
		return 0, fmt.Errorf("delete requests: limit %d: %w", limit, edge.ErrInvalid)
	}
	var n int64
	err := db.inOrg(ctx, orgID, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM requests WHERE id IN
			(SELECT id FROM requests WHERE org_id = $1 AND at < $2 ORDER BY at LIMIT $3)`, orgID, before, limit)
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("delete requests: %w", err)
	}
	return n, nil
}

// EnsureRequestPartitions creates the monthly partitions of request
// metadata from now's month through months later that do not exist yet
// (moving in any rows the default partition held for them), and returns
// the names created. Retention calls it ahead of time, so a record rarely
// lands in the default partition.
func (db *DB) EnsureRequestPartitions(ctx context.Context, now time.Time, months int) ([]string, error) {
	if months < 0 {
		return nil, fmt.Errorf("create request partitions: %d months: %w", months, edge.ErrInvalid)
	}
	names, err := db.partitionCall(ctx, `SELECT codex_requests_partitions($1, $2)`, now, now.AddDate(0, months, 0))
	if err != nil {
		return nil, fmt.Errorf("create request partitions: %w", err)
	}
	return names, nil
}

// DropRequestPartitions drops every monthly partition of request metadata
// whose whole month lies before before, and returns the names dropped.
// The rows of the month before falls in stay for DeleteRequestsBefore.
func (db *DB) DropRequestPartitions(ctx context.Context, before time.Time) ([]string, error) {
	names, err := db.partitionCall(ctx, `SELECT codex_requests_drop_partitions($1)`, before)
	if err != nil {
		return nil, fmt.Errorf("drop request partitions: %w", err)
	}
	return names, nil
}

func (db *DB) partitionCall(ctx context.Context, sql string, args ...any) ([]string, error) {
	var names []string
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, sql, args...)
		if err != nil {
			return err
		}
		names, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	return names, err
}
