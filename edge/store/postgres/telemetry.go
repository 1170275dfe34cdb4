package postgres

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/keyring"
	"github.com/persiv/codex/edge/telemetry"
)

// enrollLock is the advisory lock key replicas enrolling the deployment
// take turns on ("enroll" in ASCII).
const enrollLock = 0x656e726f6c6c

// TelemetryOptions tune TelemetryState.
type TelemetryOptions struct {
	// MaxBatches and MaxBytes bound the spool (CODEX_TELEMETRY_SPOOL_MAX_BATCHES,
	// CODEX_TELEMETRY_SPOOL_MAX_BYTES); past them the oldest batches are
	// dropped. Default telemetry.DefaultSpoolMaxBatches, DefaultSpoolMaxBytes.
	MaxBatches int
	MaxBytes   int64
	// Lease is how long a claimed batch stays with its sender before
	// another replica may take it (CODEX_TELEMETRY_SPOOL_LEASE, default
	// telemetry.DefaultSpoolLease).
	Lease time.Duration
}

// Telemetry is the hybrid link's state shared by every replica of a
// deployment (telemetry.State): one enrollment, one switch, one batch
// sequence, one spool and one egress ledger (migration 00009).
type Telemetry struct {
	db     *DB
	opts   TelemetryOptions
	holder string // this sender's name in the spool's claims
}

var _ telemetry.State = (*Telemetry)(nil)

// TelemetryState returns the deployment's telemetry state in the database.
func (db *DB) TelemetryState(opts TelemetryOptions) *Telemetry {
	if opts.MaxBatches <= 0 {
		opts.MaxBatches = telemetry.DefaultSpoolMaxBatches
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = telemetry.DefaultSpoolMaxBytes
	}
	if opts.Lease <= 0 {
		opts.Lease = telemetry.DefaultSpoolLease
	}
	b := make([]byte, 8)
	rand.Read(b)
	return &Telemetry{db: db, opts: opts, holder: hex.EncodeToString(b)}
}

// Enrolling implements telemetry.State: fn runs holding a transaction's
// advisory lock, so replicas enroll one at a time and the later ones find
// the first one's enrollment. The lock is held across the enrollment
// exchange (bounded by the enrollment client's timeout).
func (t *Telemetry) Enrolling(ctx context.Context, fn func(cur telemetry.Enrollment, ok bool) (telemetry.Enrollment, bool, error)) error {
	err := t.db.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(enrollLock)); err != nil {
			return err
		}
		cur, ok, err := readEnrollment(ctx, tx)
		if err != nil {
			return err
		}
		next, store, err := fn(cur, ok)
		if err != nil || !store {
			return err
		}
		b, err := json.Marshal(next)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE telemetry_state SET enrollment = $1`, b)
		return err
	})
	return wrap("telemetry enrollment", err)
}

type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func readEnrollment(ctx context.Context, q querier) (telemetry.Enrollment, bool, error) {
	var (
		e   telemetry.Enrollment
		raw []byte
	)
	if err := q.QueryRow(ctx, `SELECT enrollment FROM telemetry_state`).Scan(&raw); err != nil {
		return e, false, err
	}
	if raw == nil {
		return e, false, nil
	}
	if err := json.Unmarshal(raw, &e); err != nil {
		return e, false, fmt.Errorf("stored enrollment: %w", err)
	}
	return e, true, nil
}

// Enrollment implements telemetry.State.
func (t *Telemetry) Enrollment(ctx context.Context) (telemetry.Enrollment, bool, error) {
	e, ok, err := readEnrollment(ctx, t.db.pool)
	return e, ok, unavailable(wrap("read telemetry enrollment", err))
}

// unavailable marks an error of an unreachable server as
// telemetry.ErrUnavailable.
func unavailable(err error) error {
	if err != nil && Unreachable(err) {
		return fmt.Errorf("%w: %w", telemetry.ErrUnavailable, err)
	}
	return err
}

// Sharing implements telemetry.State.
func (t *Telemetry) Sharing(ctx context.Context) (telemetry.Sharing, error) {
	var (
		sh telemetry.Sharing
		at *time.Time
	)
	err := t.db.pool.QueryRow(ctx, `SELECT sharing_on, sharing_changed_at, sharing_by FROM telemetry_state`).Scan(&sh.On, &at, &sh.By)
	sh.ChangedAt = fromTS(at)
	return sh, unavailable(wrap("read telemetry sharing", err))
}

// SetSharing implements telemetry.State.
func (t *Telemetry) SetSharing(ctx context.Context, sh telemetry.Sharing) error {
	_, err := t.db.pool.Exec(ctx, `UPDATE telemetry_state SET sharing_on = $1, sharing_changed_at = $2, sharing_by = $3`,
		sh.On, tsOrNil(sh.ChangedAt), sh.By)
	return wrap("set telemetry sharing", err)
}

// Progress implements telemetry.State.
func (t *Telemetry) Progress(ctx context.Context) (telemetry.Progress, error) {
	var (
		p  telemetry.Progress
		at *time.Time
	)
	err := t.db.pool.QueryRow(ctx, `SELECT last_seq, last_sent_seq, last_sent_at FROM telemetry_state`).Scan(&p.LastSeq, &p.LastSentSeq, &at)
	p.LastSentAt = fromTS(at)
	return p, wrap("read telemetry progress", err)
}

// NextSeq implements telemetry.State with one atomic UPDATE … RETURNING:
// concurrent replicas each get their own number.
func (t *Telemetry) NextSeq(ctx context.Context) (int64, error) {
	var seq int64
	err := t.db.pool.QueryRow(ctx, `UPDATE telemetry_state SET last_seq = last_seq + 1 RETURNING last_seq`).Scan(&seq)
	return seq, wrap("next telemetry sequence number", err)
}

// Put implements telemetry.State: the batch is stored and, in the same
// transaction, the oldest batches past the bounds are dropped and counted.
func (t *Telemetry) Put(ctx context.Context, seq int64, data []byte) (int, error) {
	var dropped int64
	err := t.db.inTx(ctx, func(tx pgx.Tx) error {
		// A batch already there is this one: its commit succeeded but the
		// answer was lost, and the retry must not fail for ever on it.
		if _, err := tx.Exec(ctx, `INSERT INTO telemetry_spool (seq, data) VALUES ($1, $2) ON CONFLICT (seq) DO NOTHING`, seq, data); err != nil {
			return err
		}
		// Newest first: a batch goes when more batches, or more bytes,
		// are newer than it and it is not the newest.
		tag, err := tx.Exec(ctx, `
			DELETE FROM telemetry_spool WHERE seq IN (
				SELECT seq FROM (
					SELECT seq, count(*) OVER w AS n, sum(octet_length(data)) OVER w AS b
					FROM telemetry_spool WINDOW w AS (ORDER BY seq DESC)) x
				WHERE n > 1 AND (n > $1 OR b > $2))`, t.opts.MaxBatches, t.opts.MaxBytes)
		if err != nil {
			return err
		}
		if dropped = tag.RowsAffected(); dropped > 0 {
			_, err = tx.Exec(ctx, `UPDATE telemetry_state SET spool_dropped = spool_dropped + $1`, dropped)
		}
		return err
	})
	return int(dropped), wrap(fmt.Sprintf("spool telemetry batch %d", seq), err)
}

// Claim implements telemetry.State: the oldest batch that is free, ours,
// or whose holder's lease expired, held for the lease. SKIP LOCKED lets
// replicas claiming at once take different batches instead of waiting.
func (t *Telemetry) Claim(ctx context.Context) (telemetry.Claimed, bool, error) {
	var c telemetry.Claimed
	err := t.db.pool.QueryRow(ctx, `
		UPDATE telemetry_spool s
		SET holder = $1, lease_until = now() + make_interval(secs => $2),
		    retaken = s.retaken OR (s.holder IS NOT NULL AND s.holder <> $1)
		FROM (SELECT seq FROM telemetry_spool
		      WHERE holder IS NULL OR holder = $1 OR lease_until < now()
		      ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED) c
		WHERE s.seq = c.seq
		RETURNING s.seq, s.data, s.retaken`, t.holder, t.opts.Lease.Seconds()).Scan(&c.Seq, &c.Data, &c.Retaken)
	if errors.Is(err, pgx.ErrNoRows) {
		return c, false, nil
	}
	if err != nil {
		return c, false, wrap("claim a telemetry batch", err)
	}
	return c, true, nil
}

// Ack implements telemetry.State.
func (t *Telemetry) Ack(ctx context.Context, seq int64, sent bool) error {
	err := t.db.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM telemetry_spool WHERE seq = $1`, seq); err != nil {
			return err
		}
		if !sent {
			return nil
		}
		_, err := tx.Exec(ctx, `UPDATE telemetry_state SET last_sent_seq = GREATEST(last_sent_seq, $1), last_sent_at = now()`, seq)
		return err
	})
	return wrap(fmt.Sprintf("acknowledge telemetry batch %d", seq), err)
}

// SpoolStats implements telemetry.State.
func (t *Telemetry) SpoolStats(ctx context.Context) (telemetry.SpoolStats, error) {
	st := telemetry.SpoolStats{MaxBatches: t.opts.MaxBatches, MaxBytes: t.opts.MaxBytes}
	err := t.db.pool.QueryRow(ctx, `
		SELECT count(*), COALESCE(sum(octet_length(data)), 0), COALESCE(max(seq), 0),
		       (SELECT spool_dropped FROM telemetry_state)
		FROM telemetry_spool`).Scan(&st.Batches, &st.Bytes, &st.MaxSeq, &st.Dropped)
	return st, wrap("telemetry spool stats", err)
}

// AppendLedger implements telemetry.State; a usage batch already in the
// ledger (the same seq, from any replica) is not added again.
func (t *Telemetry) AppendLedger(ctx context.Context, e telemetry.LedgerEntry, data []byte) error {
	sum := sha256.Sum256(data)
	e.Bytes, e.SHA256, e.Batch = len(data), hex.EncodeToString(sum[:]), json.RawMessage(data)
	line, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	_, err = t.db.pool.Exec(ctx, `
		INSERT INTO telemetry_ledger (kind, seq, entry) VALUES ($1, $2, $3)
		ON CONFLICT (seq) WHERE kind = '' DO NOTHING`, e.Kind, e.Seq, line)
	return wrap("append to the telemetry ledger", err)
}

// Ledger implements telemetry.State: the deployment's whole egress.
func (t *Telemetry) Ledger(ctx context.Context) ([]telemetry.LedgerEntry, error) {
	rows, err := t.db.pool.Query(ctx, `SELECT entry FROM telemetry_ledger ORDER BY id`)
	if err != nil {
		return nil, wrap("read the telemetry ledger", err)
	}
	defer rows.Close()
	var out []telemetry.LedgerEntry
	for rows.Next() {
		var line []byte
		if err := rows.Scan(&line); err != nil {
			return nil, wrap("read the telemetry ledger", err)
		}
		var e telemetry.LedgerEntry
		if err := json.Unmarshal(line, &e); err != nil {
			return nil, fmt.Errorf("telemetry ledger entry: %w", err)
		}
		out = append(out, e)
	}
	return out, wrap("read the telemetry ledger", rows.Err())
}

// TelemetryKeys is the keyring.Store of the deployment's own secrets
// (keyring org telemetry.KeyOrg): their data keys, in telemetry_data_keys,
// are shared by every replica, so any of them opens the seed another one
// sealed at enrollment.
type TelemetryKeys struct{ db *DB }

var _ keyring.Store = TelemetryKeys{}

// TelemetryKeys returns the key store of the deployment's own secrets.
func (db *DB) TelemetryKeys() TelemetryKeys { return TelemetryKeys{db} }

// CreateDEK implements keyring.Store.
func (k TelemetryKeys) CreateDEK(ctx context.Context, d keyring.WrappedDEK) error {
	d.CreatedAt = nowIfZero(d.CreatedAt)
	err := k.db.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE telemetry_data_keys SET state = 'retired' WHERE scope = $1`, d.OrgID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx,
			`INSERT INTO telemetry_data_keys (scope, id, generation, state, master_ref, master_version, wrapped, created_at, seals)
			 VALUES ($1, $2, $3, 'active', $4, $5, $6, $7, $8)`,
			d.OrgID, d.ID.String(), d.Generation, d.MasterRef, d.MasterVersion, d.Wrapped, d.CreatedAt, d.Seals)
		return err
	})
	return wrap(fmt.Sprintf("create data key of %q", d.OrgID), err)
}

// DEKs implements keyring.Store.
func (k TelemetryKeys) DEKs(ctx context.Context, scope string) ([]keyring.WrappedDEK, error) {
	rows, err := k.db.pool.Query(ctx,
		`SELECT id, generation, state, master_ref, master_version, wrapped, created_at, rewrapped_at, seals
		 FROM telemetry_data_keys WHERE scope = $1 ORDER BY generation DESC`, scope)
	if err != nil {
		return nil, wrap("list data keys", err)
	}
	out, err := scanDEKs(rows, scope)
	return out, wrap("list data keys", err)
}

// UpdateWrapped implements keyring.Store.
func (k TelemetryKeys) UpdateWrapped(ctx context.Context, scope string, id keyring.DEKID, w keyring.Wrap, at time.Time) error {
	tag, err := k.db.pool.Exec(ctx,
		`UPDATE telemetry_data_keys SET master_ref = $1, master_version = $2, wrapped = $3, rewrapped_at = $4
		 WHERE scope = $5 AND id = $6`, w.Ref, w.Version, w.Blob, at, scope, id.String())
	if err == nil && tag.RowsAffected() == 0 {
		err = edge.ErrNotFound
	}
	return wrap(fmt.Sprintf("rewrap data key %s", id), err)
}

// AddSeals implements keyring.Store.
func (k TelemetryKeys) AddSeals(ctx context.Context, scope string, id keyring.DEKID, n int64) (int64, error) {
	var total int64
	err := k.db.pool.QueryRow(ctx,
		`UPDATE telemetry_data_keys SET seals = seals + $1 WHERE scope = $2 AND id = $3 RETURNING seals`,
		n, scope, id.String()).Scan(&total)
	return total, wrap(fmt.Sprintf("reserve seals under data key %s", id), err)
}

// DeleteDEKs implements keyring.Store.
func (k TelemetryKeys) DeleteDEKs(ctx context.Context, scope string) (int, error) {
	tag, err := k.db.pool.Exec(ctx, `DELETE FROM telemetry_data_keys WHERE scope = $1`, scope)
	if err != nil {
		return 0, wrap(fmt.Sprintf("delete data keys of %q", scope), err)
	}
	return int(tag.RowsAffected()), nil
}

// DEKOrgs implements keyring.Store.
func (k TelemetryKeys) DEKOrgs(ctx context.Context) ([]string, error) {
	rows, err := k.db.pool.Query(ctx, `SELECT DISTINCT scope FROM telemetry_data_keys ORDER BY scope`)
	if err != nil {
		return nil, wrap("list data key scopes", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(out) == 0 {
		return nil, wrap("list data key scopes", err)
	}
	return out, nil
}

// SharedTelemetry returns the deployment's telemetry state, with the spool
// bounds and lease given, and the key store of its secrets: what serve
// and the CLI use on Postgres.
func (db *DB) SharedTelemetry(maxBatches int, maxBytes int64, lease time.Duration) (telemetry.State, keyring.Store) {
	return db.TelemetryState(TelemetryOptions{MaxBatches: maxBatches, MaxBytes: maxBytes, Lease: lease}), db.TelemetryKeys()
}
