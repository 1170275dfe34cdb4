package natsbus

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// DefaultEdgeMaxConnections is EdgeConnLimit.Max's default.
const DefaultEdgeMaxConnections = 16

// EdgeConnLimit bounds each edge's connections to the ingest account: past
// Max, the edge's oldest connection is closed. nats-server has no
// per-user connection limit, so it follows the account's connect and
// disconnect events over a system account connection and asks the server
// that holds the oldest connection to close it. Edges are the users not
// signed by the account key itself (the control plane's own users are).
//
// Connections opened while no EdgeConnLimit ran (an external NATS with the
// control plane down) are not known to it; the server-wide
// max_connections bounds them.
type EdgeConnLimit struct {
	Sys     *nats.Conn // a system account connection
	Account string     // the ingest account's public key
	Max     int        // default DefaultEdgeMaxConnections
	Log     *slog.Logger

	mu    sync.Mutex
	conns map[string][]edgeConn // by user public key, oldest first
	subs  []*nats.Subscription
}

type edgeConn struct {
	server string
	cid    uint64
	start  time.Time
}

// Start subscribes to the account's events; Stop ends it.
func (l *EdgeConnLimit) Start() error {
	if l.Max <= 0 {
		l.Max = DefaultEdgeMaxConnections
	}
	if l.Log == nil {
		l.Log = slog.New(slog.DiscardHandler)
	}
	l.conns = map[string][]edgeConn{}
	on, err := l.Sys.Subscribe(fmt.Sprintf("$SYS.ACCOUNT.%s.CONNECT", l.Account), l.connected)
	if err != nil {
		return fmt.Errorf("edge connection limit: %w", err)
	}
	off, err := l.Sys.Subscribe(fmt.Sprintf("$SYS.ACCOUNT.%s.DISCONNECT", l.Account), l.disconnected)
	if err != nil {
		_ = on.Unsubscribe()
		return fmt.Errorf("edge connection limit: %w", err)
	}
	l.subs = []*nats.Subscription{on, off}
	// The servers send events only once they know of the interest.
	if err := l.Sys.Flush(); err != nil {
		l.Stop()
		return fmt.Errorf("edge connection limit: %w", err)
	}
	return nil
}

// Stop unsubscribes.
func (l *EdgeConnLimit) Stop() {
	for _, s := range l.subs {
		// Fails only on a closed connection, which has dropped them anyway.
		_ = s.Unsubscribe()
	}
	l.subs = nil
}

func (l *EdgeConnLimit) isEdge(c server.ClientInfo) bool {
	return c.User != "" && c.IssuerKey != "" && c.IssuerKey != l.Account
}

func (l *EdgeConnLimit) connected(m *nats.Msg) {
	var ev server.ConnectEventMsg
	if err := json.Unmarshal(m.Data, &ev); err != nil {
		l.Log.Warn("edge connection limit: bad connect event", "err", err)
		return
	}
	if !l.isEdge(ev.Client) {
		return
	}
	c := edgeConn{server: ev.Server.ID, cid: ev.Client.ID}
	if ev.Client.Start != nil {
		c.start = *ev.Client.Start
	}
	l.mu.Lock()
	conns := append(l.conns[ev.Client.User], c)
	slices.SortStableFunc(conns, func(a, b edgeConn) int { return a.start.Compare(b.start) })
	var excess []edgeConn
	if n := len(conns) - l.Max; n > 0 {
		excess = slices.Clone(conns[:n])
		conns = slices.Delete(conns, 0, n)
	}
	l.conns[ev.Client.User] = conns
	l.mu.Unlock()
	for _, old := range excess {
		l.Log.Warn("edge over its connection limit: closing its oldest connection",
			"edge_id", ev.Client.NameTag, "user", ev.Client.User, "max", l.Max, "server", old.server, "cid", old.cid)
		if err := l.kick(old); err != nil {
			l.Log.Error("edge connection limit: close connection", "edge_id", ev.Client.NameTag, "err", err)
		}
	}
}

func (l *EdgeConnLimit) disconnected(m *nats.Msg) {
	var ev server.DisconnectEventMsg
	if err := json.Unmarshal(m.Data, &ev); err != nil {
		l.Log.Warn("edge connection limit: bad disconnect event", "err", err)
		return
	}
	if !l.isEdge(ev.Client) {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	conns := slices.DeleteFunc(l.conns[ev.Client.User], func(c edgeConn) bool {
		return c.server == ev.Server.ID && c.cid == ev.Client.ID
	})
	if len(conns) == 0 {
		delete(l.conns, ev.Client.User)
	} else {
		l.conns[ev.Client.User] = conns
	}
}

// kick asks the server holding c to close it.
func (l *EdgeConnLimit) kick(c edgeConn) error {
	req, _ := json.Marshal(server.KickClientReq{CID: c.cid})
	msg, err := l.Sys.Request(fmt.Sprintf("$SYS.REQ.SERVER.%s.KICK", c.server), req, 5*time.Second)
	if err != nil {
		return err
	}
	var resp struct {
		Error *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return fmt.Errorf("bad kick response: %w", err)
	}
	if resp.Error != nil {
		return errors.New(resp.Error.Description)
	}
	return nil
}
