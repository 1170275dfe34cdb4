package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/store"
)

var _ edge.AuditStore = (*DB)(nil)

// SetAuditLevel sets the audit level of an org or of one of its keys, and
// records an "org" change so that every edge reloads the org's settings.
func (db *DB) SetAuditLevel(ctx context.Context, s edge.AuditSetting) error {
	if err := s.Prepare(); err != nil {
		return fmt.Errorf("set audit level: %w", err)
	}
	err := db.inOrg(ctx, s.OrgID, func(tx pgx.Tx) error {
		if err := orgExists(ctx, tx, s.OrgID); err != nil {
			return err
		}
		if s.KeyID != "" {
			var one int
			err := tx.QueryRow(ctx, `SELECT 1 FROM api_keys WHERE org_id = $1 AND id = $2`, s.OrgID, s.KeyID).Scan(&one)
			if errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("key %q of org %q: %w", s.KeyID, s.OrgID, edge.ErrNotFound)
			}
			if err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx,
			`INSERT INTO audit_settings (org_id, key_id, level, updated_at) VALUES ($1, $2, $3, $4)
			 ON CONFLICT (org_id, key_id) DO UPDATE SET level = excluded.level, updated_at = excluded.updated_at`,
			s.OrgID, s.KeyID, string(s.Level), s.UpdatedAt)
		if err != nil {
			return err
		}
		return recordChange(ctx, tx, s.OrgID, "org", "audit", s.UpdatedAt)
	})
	return wrap("set audit level", err)
}

// AuditLevels lists the org's audit settings, the org's own first.
func (db *DB) AuditLevels(ctx context.Context, orgID string) ([]edge.AuditSetting, error) {
	var out []edge.AuditSetting
	err := db.inOrg(ctx, orgID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx,
			`SELECT key_id, level, updated_at FROM audit_settings WHERE org_id = $1 ORDER BY key_id`, orgID)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			s := edge.AuditSetting{OrgID: orgID}
			var level string
			if err := rows.Scan(&s.KeyID, &level, &s.UpdatedAt); err != nil {
				return err
			}
			s.Level, s.UpdatedAt = edge.AuditLevel(level), s.UpdatedAt.UTC()
			out = append(out, s)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, wrap("list audit levels", err)
	}
	return out, nil
}

// insertAuditSQL inserts one org's events in one statement (COPY FROM is
// not allowed under row-level security).
const insertAuditSQL = `INSERT INTO audit_events (` + store.AuditColumns + `)
	SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::timestamptz[], $5::text[], $6::text[],
		$7::bytea[], $8::bytea[], $9::bytea[], $10::text[], $11::bytea[], $12::bytea[])`

// AppendAudit appends events to their orgs' chains in one transaction.
// For each org, in sorted order, it locks the org's chain head row (made
// on the org's first event), skips events already stored, links the rest
// after the head, inserts them in one statement and moves the head. The
// row lock makes the appenders of one org, on every edge, take turns.
func (db *DB) AppendAudit(ctx context.Context, events []edge.AuditEvent) error {
	if len(events) == 0 {
		return nil
	}
	orgs, byOrg, err := store.GroupAudit(events)
	if err != nil {
		return fmt.Errorf("append audit events: %w", err)
	}
	err = db.inTx(ctx, func(tx pgx.Tx) error {
		for _, org := range orgs {
			if err := setOrg(ctx, tx, org); err != nil {
				return err
			}
			if err := appendOrgAudit(ctx, tx, org, events, byOrg[org]); err != nil {
				return fmt.Errorf("events of org %q: %w", org, err)
			}
		}
		return nil
	})
	return wrap(fmt.Sprintf("append %d audit events", len(events)), err)
}

func appendOrgAudit(ctx context.Context, tx pgx.Tx, org string, events []edge.AuditEvent, idx []int) error {
	if _, err := tx.Exec(ctx,
		`INSERT INTO audit_heads (org_id, seq, hash) VALUES ($1, 0, $2) ON CONFLICT (org_id) DO NOTHING`,
		org, edge.GenesisHash()); err != nil {
		return err
	}
	var (
		seq  int64
		hash []byte
	)
	if err := tx.QueryRow(ctx, `SELECT seq, hash FROM audit_heads WHERE org_id = $1 FOR UPDATE`, org).Scan(&seq, &hash); err != nil {
		return fmt.Errorf("lock chain head: %w", err)
	}
	ids := make([]string, len(idx))
	for i, j := range idx {
		ids[i] = events[j].ID
	}
	stored := map[string]bool{}
	rows, err := tx.Query(ctx, `SELECT id FROM audit_events WHERE org_id = $1 AND id = ANY($2)`, org, ids)
	if err != nil {
		return err
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return err
		}
		stored[id] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
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
	var c auditColumnsBuf
	for _, e := range fresh {
		c.add(e)
	}
	if _, err := tx.Exec(ctx, insertAuditSQL, c.args()...); err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `UPDATE audit_heads SET seq = $2, hash = $3 WHERE org_id = $1`, org, seq, hash)
	return err
}

// auditColumnsBuf holds one org's events column by column.
type auditColumnsBuf struct {
	orgID, id, kind, meta, removed []string
	seq                            []int64
	at                             []time.Time
	req, resp, content, prev, hash [][]byte
}

func (c *auditColumnsBuf) add(e *edge.AuditEvent) {
	c.orgID = append(c.orgID, e.OrgID)
	c.seq = append(c.seq, e.Seq)
	c.id = append(c.id, e.ID)
	c.at = append(c.at, e.Time)
	c.kind = append(c.kind, string(e.Kind))
	c.meta = append(c.meta, string(e.Meta))
	c.req = append(c.req, nilIfEmpty(e.RequestDigest))
	c.resp = append(c.resp, nilIfEmpty(e.ResponseDigest))
	c.content = append(c.content, nilIfEmpty(e.Content))
	c.removed = append(c.removed, e.ContentRemoved)
	c.prev = append(c.prev, e.PrevHash)
	c.hash = append(c.hash, e.Hash)
}

func (c *auditColumnsBuf) args() []any {
	return []any{c.orgID, c.seq, c.id, c.at, c.kind, c.meta, c.req, c.resp, c.content, c.removed, c.prev, c.hash}
}

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// AuditEvents lists the org's events in chain order.
func (db *DB) AuditEvents(ctx context.Context, orgID string, q edge.AuditQuery) ([]edge.AuditEvent, error) {
	if q.Limit <= 0 {
		return nil, fmt.Errorf("list audit events: limit %d: %w", q.Limit, edge.ErrInvalid)
	}
	var out []edge.AuditEvent
	err := db.inOrg(ctx, orgID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx,
			`SELECT `+store.AuditColumns+` FROM audit_events
			 WHERE org_id = $1 AND seq > $2 AND ($3::timestamptz IS NULL OR at >= $3)
			 ORDER BY seq LIMIT $4`,
			orgID, q.AfterSeq, tsOrNil(q.Since), q.Limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			e, err := scanAudit(rows)
			if err != nil {
				return err
			}
			out = append(out, e)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, wrap("list audit events", err)
	}
	return out, nil
}

func scanAudit(row pgx.Row) (edge.AuditEvent, error) {
	var (
		e          edge.AuditEvent
		kind, meta string
	)
	err := row.Scan(&e.OrgID, &e.Seq, &e.ID, &e.Time, &kind, &meta, &e.RequestDigest, &e.ResponseDigest,
		&e.Content, &e.ContentRemoved, &e.PrevHash, &e.Hash)
	e.Time, e.Kind, e.Meta = e.Time.UTC(), edge.AuditKind(kind), []byte(meta)
	return e, err
}

// AuditEventByID returns one event of any org: the org comes from the
// SECURITY DEFINER lookup codex_audit_event_org, the event from a read
// under that org's row-level security.
func (db *DB) AuditEventByID(ctx context.Context, id string) (edge.AuditEvent, error) {
	var org string
	err := db.pool.QueryRow(ctx, `SELECT org_id FROM codex_audit_event_org($1)`, id).Scan(&org)
	if err != nil {
		return edge.AuditEvent{}, wrap(fmt.Sprintf("audit event %q", id), err)
	}
	var e edge.AuditEvent
	err = db.inOrg(ctx, org, func(tx pgx.Tx) error {
		e, err = scanAudit(tx.QueryRow(ctx,
			`SELECT `+store.AuditColumns+` FROM audit_events WHERE org_id = $1 AND id = $2`, org, id))
		return err
	})
	return e, wrap(fmt.Sprintf("audit event %q", id), err)
}

// RemoveAuditContent clears the sealed content of the org's events older
// than before (zero: all), keeping their metadata, digests and chain.
func (db *DB) RemoveAuditContent(ctx context.Context, orgID string, before time.Time, reason string) (int64, error) {
	var n int64
	err := db.inOrg(ctx, orgID, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx,
			`UPDATE audit_events SET content = NULL, content_removed = $3
			 WHERE org_id = $1 AND content IS NOT NULL AND ($2::timestamptz IS NULL OR at < $2)`,
			orgID, tsOrNil(before), reason)
		n = tag.RowsAffected()
		return err
	})
	return n, wrap(fmt.Sprintf("remove audit content of org %q", orgID), err)
}
