package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/store"
)

var _ edge.AuditStore = (*DB)(nil)

const auditColumns = store.AuditColumns

// auditParams is the number of host parameters per inserted event.
const auditParams = 12

// SetAuditLevel sets the audit level of an org or of one of its keys, and
// records an "org" change so that every edge reloads the org's settings.
func (db *DB) SetAuditLevel(ctx context.Context, s edge.AuditSetting) error {
	if err := s.Prepare(); err != nil {
		return fmt.Errorf("set audit level: %w", err)
	}
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		if err := orgExists(ctx, tx, s.OrgID); err != nil {
			return err
		}
		if s.KeyID != "" {
			var one int
			err := tx.QueryRowContext(ctx, `SELECT 1 FROM api_keys WHERE org_id = ? AND id = ?`, s.OrgID, s.KeyID).Scan(&one)
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("key %q of org %q: %w", s.KeyID, s.OrgID, edge.ErrNotFound)
			}
			if err != nil {
				return err
			}
		}
		_, err := tx.ExecContext(ctx,
			`INSERT INTO audit_settings (org_id, key_id, level, updated_at) VALUES (?, ?, ?, ?)
			 ON CONFLICT (org_id, key_id) DO UPDATE SET level = excluded.level, updated_at = excluded.updated_at`,
			s.OrgID, s.KeyID, string(s.Level), s.UpdatedAt.UnixNano())
		if err != nil {
			return err
		}
		return recordChange(ctx, tx, s.OrgID, "org", "audit", s.UpdatedAt)
	})
	return wrap("set audit level", err)
}

// AuditLevels lists the org's audit settings, the org's own first.
func (db *DB) AuditLevels(ctx context.Context, orgID string) ([]edge.AuditSetting, error) {
	rows, err := db.read.QueryContext(ctx,
		`SELECT key_id, level, updated_at FROM audit_settings WHERE org_id = ? ORDER BY key_id`, orgID)
	if err != nil {
		return nil, wrap("list audit levels", err)
	}
	defer rows.Close()
	var out []edge.AuditSetting
	for rows.Next() {
		s := edge.AuditSetting{OrgID: orgID}
		var (
			level string
			at    int64
		)
		if err := rows.Scan(&s.KeyID, &level, &at); err != nil {
			return nil, wrap("list audit levels", err)
		}
		s.Level, s.UpdatedAt = edge.AuditLevel(level), time.Unix(0, at).UTC()
		out = append(out, s)
	}
	return out, wrap("list audit levels", rows.Err())
}

// AppendAudit appends events to their orgs' chains in one write
// transaction (SQLite serialises those, across processes too): for each
// org it reads the chain head, skips events already stored, links the
// rest after it and moves the head.
func (db *DB) AppendAudit(ctx context.Context, events []edge.AuditEvent) error {
	if len(events) == 0 {
		return nil
	}
	orgs, byOrg, err := store.GroupAudit(events)
	if err != nil {
		return fmt.Errorf("append audit events: %w", err)
	}
	err = db.inTx(ctx, func(tx *sql.Tx) error {
		for _, org := range orgs {
			if err := db.appendOrgAudit(ctx, tx, org, events, byOrg[org]); err != nil {
				return fmt.Errorf("events of org %q: %w", org, err)
			}
		}
		return nil
	})
	return wrap(fmt.Sprintf("append %d audit events", len(events)), err)
}

func (db *DB) appendOrgAudit(ctx context.Context, tx *sql.Tx, org string, events []edge.AuditEvent, idx []int) error {
	seq, hash := int64(0), edge.GenesisHash()
	err := tx.QueryRowContext(ctx, `SELECT seq, hash FROM audit_heads WHERE org_id = ?`, org).Scan(&seq, &hash)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("read chain head: %w", err)
	}
	stored, err := storedIDs(ctx, tx, org, events, idx)
	if err != nil {
		return err
	}
	fresh := make([]*edge.AuditEvent, 0, len(idx))
	for _, j := range idx {
		if e := &events[j]; !stored[e.ID] {
			fresh = append(fresh, e)
			stored[e.ID] = true // the same id twice in one batch: once
		}
	}
	if len(fresh) == 0 {
		return nil
	}
	seq, hash = store.LinkAudit(seq, hash, fresh)
	// Multi-row INSERTs, as for requests: a statement's fixed cost is as
	// much as a row's.
	args := make([]any, 0, auditParams*min(len(fresh), maxInsertRows))
	for rest := fresh; len(rest) > 0; {
		n := chunkSize(len(rest))
		args = args[:0]
		for _, e := range rest[:n] {
			args = append(args, e.OrgID, e.Seq, e.ID, e.Time.UnixNano(), string(e.Kind), e.Meta,
				nilIfEmpty(e.RequestDigest), nilIfEmpty(e.ResponseDigest), nilIfEmpty(e.Content), e.ContentRemoved,
				e.PrevHash, e.Hash)
		}
		//nolint:sqlclosecheck // a transaction's statement closes with the transaction
		if _, err := tx.StmtContext(ctx, db.insertAudit[n]).ExecContext(ctx, args...); err != nil {
			return fmt.Errorf("events %q to %q: %w", rest[0].ID, rest[n-1].ID, err)
		}
		rest = rest[n:]
	}
	_, err = tx.ExecContext(ctx,
		`INSERT INTO audit_heads (org_id, seq, hash) VALUES (?, ?, ?)
		 ON CONFLICT (org_id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash`, org, seq, hash)
	return err
}

// storedIDsSQL looks each id up in the id index. CROSS JOIN makes SQLite
// loop over the given ids: left to itself, the planner walked every event
// of the org (its index on org_id), which made each batch cost as much as
// the org's whole log.
const storedIDsSQL = `SELECT e.id FROM json_each(?) AS j CROSS JOIN audit_events AS e ON e.id = j.value WHERE e.org_id = ?`

// storedIDs returns which of the events' ids are stored already, in one
// query: the ids travel as one JSON array.
func storedIDs(ctx context.Context, tx *sql.Tx, org string, events []edge.AuditEvent, idx []int) (map[string]bool, error) {
	ids := make([]string, len(idx))
	for i, j := range idx {
		ids[i] = events[j].ID
	}
	list, err := json.Marshal(ids)
	if err != nil {
		return nil, err
	}
	rows, err := tx.QueryContext(ctx, storedIDsSQL, string(list), org)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	stored := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		stored[id] = true
	}
	return stored, rows.Err()
}

// AuditEvents lists the org's events in chain order.
func (db *DB) AuditEvents(ctx context.Context, orgID string, q edge.AuditQuery) ([]edge.AuditEvent, error) {
	if q.Limit <= 0 {
		return nil, fmt.Errorf("list audit events: limit %d: %w", q.Limit, edge.ErrInvalid)
	}
	var from int64 // the zero time means from the start
	if !q.Since.IsZero() {
		from = q.Since.UnixNano()
	}
	rows, err := db.read.QueryContext(ctx,
		`SELECT `+auditColumns+` FROM audit_events
		 WHERE org_id = ? AND seq > ? AND at >= ? ORDER BY seq LIMIT ?`, orgID, q.AfterSeq, from, q.Limit)
	if err != nil {
		return nil, wrap("list audit events", err)
	}
	defer rows.Close()
	var out []edge.AuditEvent
	for rows.Next() {
		e, err := scanAudit(rows)
		if err != nil {
			return nil, wrap("list audit events", err)
		}
		out = append(out, e)
	}
	return out, wrap("list audit events", rows.Err())
}

func scanAudit(row scanner) (edge.AuditEvent, error) {
	var (
		e    edge.AuditEvent
		at   int64
		kind string
	)
	err := row.Scan(&e.OrgID, &e.Seq, &e.ID, &at, &kind, &e.Meta, &e.RequestDigest, &e.ResponseDigest,
		&e.Content, &e.ContentRemoved, &e.PrevHash, &e.Hash)
	e.Time, e.Kind = time.Unix(0, at).UTC(), edge.AuditKind(kind)
	return e, err
}

// AuditEventByID returns one event of any org.
func (db *DB) AuditEventByID(ctx context.Context, id string) (edge.AuditEvent, error) {
	e, err := scanAudit(db.read.QueryRowContext(ctx,
		`SELECT `+auditColumns+` FROM audit_events WHERE id = ?`, id))
	return e, wrap(fmt.Sprintf("audit event %q", id), err)
}

// RemoveAuditContent clears the sealed content of the org's events older
// than before (zero: all), keeping their metadata, digests and chain. The
// store's secure_delete overwrites the freed bytes in the database file.
func (db *DB) RemoveAuditContent(ctx context.Context, orgID string, before time.Time, reason string) (int64, error) {
	until := int64(1<<63 - 1)
	if !before.IsZero() {
		until = before.UnixNano()
	}
	var n int64
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx,
			`UPDATE audit_events SET content = NULL, content_removed = ?
			 WHERE org_id = ? AND content IS NOT NULL AND at < ?`, reason, orgID, until)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return n, wrap(fmt.Sprintf("remove audit content of org %q", orgID), err)
}
