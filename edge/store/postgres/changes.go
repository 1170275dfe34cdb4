package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/persiv/codex/edge"
)

// Changes returns up to 1000 change-feed entries after seq, oldest first,
// through codex_changes.
func (db *DB) Changes(ctx context.Context, after int64) ([]edge.Change, error) {
	rows, err := db.pool.Query(ctx, `SELECT seq, org_id, kind, ref FROM codex_changes($1, $2) ORDER BY seq`, after, changesPage)
	if err != nil {
		return nil, wrap("list changes", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (edge.Change, error) {
		var c edge.Change
		err := r.Scan(&c.Seq, &c.OrgID, &c.Kind, &c.Ref)
		return c, err
	})
	if err != nil {
		return nil, wrap("list changes", err)
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// ChangeNotify returns a channel that receives a value soon after another
// transaction (on any instance) commits a change-feed entry, so the reader
// can read the feed at once rather than at its next poll. Values coalesce:
// one pending value stands for any number of changes. The first call starts
// a listener on its own connection, which reconnects after a failure and
// then sends a value (changes may have been missed meanwhile); polling the
// feed stays the safety net.
func (db *DB) ChangeNotify() <-chan struct{} {
	db.notifyOnce.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		db.stop, db.listenDone = cancel, make(chan struct{})
		go db.listen(ctx)
	})
	return db.notify
}

func (db *DB) signal() {
	select {
	case db.notify <- struct{}{}:
	default:
	}
}

func (db *DB) listen(ctx context.Context) {
	defer close(db.listenDone)
	backoff := 100 * time.Millisecond
	failing := false
	for ctx.Err() == nil {
		err := db.listenOnce(ctx, func() {
			backoff = 100 * time.Millisecond
			if failing {
				db.log.Info("change notifications resumed")
				failing = false
			}
			// Anything may have changed while not listening.
			db.signal()
		})
		if ctx.Err() != nil {
			return
		}
		if !failing {
			db.log.Warn("change notifications interrupted; polling the change feed meanwhile", "err", err)
			failing = true
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// listenOnce holds one connection out of the pool, listening, until ctx
// ends or the connection fails.
func (db *DB) listenOnce(ctx context.Context, listening func()) error {
	c, err := db.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// A connection that was listening goes back closed, not to the pool.
	conn := c.Hijack()
	defer func() { _ = conn.Close(context.Background()) }()
	if _, err := conn.Exec(ctx, "LISTEN "+NotifyChannel); err != nil {
		return err
	}
	listening()
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return err
		}
		db.signal()
	}
}
