package audit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/user"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/apikey"
)

// Appender is the part of the store that takes audit events.
type Appender interface {
	AppendAudit(ctx context.Context, events []edge.AuditEvent) error
}

// Actor is who made an admin change and through which interface.
type Actor struct {
	Via string // "cli", "admin-api" or "config"
	Who string // the OS user and host of a CLI run; the client address of an admin API call
}

// CLI is the actor of a codex-edge command run by the current OS user.
func CLI() Actor {
	who := "unknown"
	if u, err := user.Current(); err == nil {
		who = u.Username
	}
	if host, err := os.Hostname(); err == nil {
		who += "@" + host
	}
	return Actor{Via: "cli", Who: who}
}

// Config is the actor of a change the edge's configuration made at
// start-up (CODEX_SHARE_METRICS, CODEX_ENROLLMENT_TOKEN): setting names
// whose variable made it.
func Config(setting string) Actor { return Actor{Via: "config", Who: setting} }

// API is the actor of an admin API request: the admin token does not name
// its holder, so the client's address does.
func API(r *http.Request) Actor {
	who := r.RemoteAddr
	if host, _, err := net.SplitHostPort(who); err == nil {
		who = host
	}
	return Actor{Via: "admin-api", Who: who}
}

// Change is one admin change. Details are names and settings, never a
// secret: no key, no credential, no token.
type Change struct {
	OrgID   string
	Action  string // "orgs.create", "keys.create", "keys.revoke", "providers.set", "limits.set", "budgets.set", "crypto.rotate", "crypto.kek_set", "crypto.byok_supplied", "crypto.shred", "audit.level", "telemetry.sharing", …
	Target  string // what it acted on: a key id, a provider, a level's key
	Details map[string]string
}

// Admin records a change in its org's chain before returning: admin
// changes are rare and must not be lost, so they skip the queue. Call it
// after the change succeeded; its error means the change is made but not
// recorded, which the caller reports.
func Admin(ctx context.Context, st Appender, by Actor, c Change) error {
	e, err := adminEvent(by, c, time.Now())
	if err != nil {
		return err
	}
	if err := st.AppendAudit(ctx, []edge.AuditEvent{e}); err != nil {
		return fmt.Errorf("record %s in the audit log: %w", c.Action, err)
	}
	return nil
}

// Orgs lists every org (edge.Store has it).
type Orgs interface {
	Orgs(ctx context.Context) ([]edge.Org, error)
}

// AdminAll records a change that concerns every org, such as the metrics
// sharing switch, in the chain of each: every org's auditors see it.
func AdminAll(ctx context.Context, st interface {
	Appender
	Orgs
}, by Actor, c Change) error {
	orgs, err := st.Orgs(ctx)
	if err != nil {
		return fmt.Errorf("record %s in the audit log: %w", c.Action, err)
	}
	now := time.Now()
	var evs []edge.AuditEvent
	for _, o := range orgs {
		c.OrgID = o.ID
		e, err := adminEvent(by, c, now)
		if err != nil {
			return err
		}
		evs = append(evs, e)
	}
	if err := st.AppendAudit(ctx, evs); err != nil {
		return fmt.Errorf("record %s in the audit log: %w", c.Action, err)
	}
	return nil
}

func adminEvent(by Actor, c Change, at time.Time) (edge.AuditEvent, error) {
	if c.OrgID == "" || c.Action == "" {
		return edge.AuditEvent{}, errors.New("audit: an admin change needs an org and an action")
	}
	return event(Meta{
		ID: apikey.NewTimeID("adm_", at), OrgID: c.OrgID, Time: at.UTC(), Kind: edge.AuditAdmin,
		Action: c.Action, Actor: by.Who, Via: by.Via, Target: c.Target, Details: c.Details,
	}, nil, nil, nil)
}

// MemorySet is the change of a memory set: its name, version and size,
// never its text.
func MemorySet(orgID, keyID, name string, version, bytes int64) Change {
	return Change{OrgID: orgID, Action: "memory.set", Target: name, Details: map[string]string{
		"key_id": keyID, "version": fmt.Sprint(version), "bytes": fmt.Sprint(bytes)}}
}

// MemoryRemoved is the change of a memory removed.
func MemoryRemoved(orgID, keyID, name string) Change {
	return Change{OrgID: orgID, Action: "memory.rm", Target: name, Details: map[string]string{"key_id": keyID}}
}

// LimitSet is the change of a limit set: the key it applies to (empty for
// the org) and the limits it leaves, "0" for none.
func LimitSet(l edge.Limit) Change {
	return Change{OrgID: l.OrgID, Action: "limits.set", Target: l.KeyID, Details: map[string]string{
		"rpm": fmt.Sprint(l.RPM), "tpm": fmt.Sprint(l.TPM)}}
}

// BudgetSet is the change of a budget set: the key it applies to (empty
// for the org), its period and its cap in USD, "0" when removed.
func BudgetSet(b edge.Budget) Change {
	return Change{OrgID: b.OrgID, Action: "budgets.set", Target: b.KeyID, Details: map[string]string{
		"period": string(b.Period), "cap_usd": edge.FormatUSD(b.CapNanoUSD)}}
}

// KEKSet is the change of an org's master key: the references before and
// after ("awskms:<arn>", "byok-ephemeral", or "default" for the edge's
// own), which name a key but hold none of it.
func KEKSet(orgID, from, to string) Change {
	ref := func(r string) string {
		if r == "" {
			return "default"
		}
		return r
	}
	return Change{OrgID: orgID, Action: "crypto.kek_set", Details: map[string]string{"from": ref(from), "to": ref(to)}}
}

// BYOKSupplied is the change of an org's ephemeral key sent to an edge:
// the fact, and how many data keys were moved under it. Nothing derived
// from the key is recorded, not even its version (a fingerprint of the
// key): an audit reader must learn nothing about it.
func BYOKSupplied(orgID string, dataKeys, rewrapped, failed int) Change {
	return Change{OrgID: orgID, Action: "crypto.byok_supplied", Details: map[string]string{
		"data_keys": fmt.Sprint(dataKeys), "rewrapped": fmt.Sprint(rewrapped), "failed": fmt.Sprint(failed)}}
}
