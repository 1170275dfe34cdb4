package main

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/audit"
	"github.com/persiv/codex/edge/config"
	"github.com/persiv/codex/edge/server"
)

// recordAdmin records an admin change made by this command in the org's
// audit log. The change is made already: a failure says so.
func (e *env) recordAdmin(st server.Store, c audit.Change) error {
	if err := audit.Admin(e.ctx, st, audit.CLI(), c); err != nil {
		return fmt.Errorf("the change was made, but %w", err)
	}
	return nil
}

// recordAdminAll records a change that concerns every org in each org's
// audit log.
func (e *env) recordAdminAll(st server.Store, c audit.Change) error {
	if err := audit.AdminAll(e.ctx, st, audit.CLI(), c); err != nil {
		return fmt.Errorf("the change was made, but %w", err)
	}
	return nil
}

func (e *env) auditLevel(args []string) error {
	f := newFlags("audit level", false)
	org := f.String("org", "", "org id or name")
	key := f.String("key", "", "a key id: set the key's level instead of the org's")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return usagef("give one level: none, hash or full")
	}
	return e.withOrg(f, *org, func(_ config.Config, st server.Store, o edge.Org) error {
		if len(pos) == 0 {
			return e.printLevels(st, o)
		}
		level, err := edge.ParseAuditLevel(pos[0])
		if err != nil {
			return usageError{err}
		}
		err = st.SetAuditLevel(e.ctx, edge.AuditSetting{OrgID: o.ID, KeyID: *key, Level: level, UpdatedAt: time.Now().UTC()})
		if errors.Is(err, edge.ErrNotFound) && *key != "" {
			return fmt.Errorf("org %s has no key %q (list them with 'codex-edge keys list --org %s')", o.Name, *key, o.Name)
		}
		if err != nil {
			return err
		}
		if err := e.recordAdmin(st, audit.Change{OrgID: o.ID, Action: "audit.level", Target: *key, Details: map[string]string{"level": string(level)}}); err != nil {
			return err
		}
		what := "org " + o.Name
		if *key != "" {
			what = "key " + *key + " of org " + o.Name
		}
		fmt.Fprintf(e.stdout, "audit level of %s: %s (running edges apply it within CODEX_CHANGE_POLL)\n", what, level)
		return nil
	})
}

func (e *env) printLevels(st server.Store, o edge.Org) error {
	levels, err := st.AuditLevels(e.ctx, o.ID)
	if err != nil {
		return err
	}
	orgLevel := edge.AuditNone
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	var keys []string
	for _, l := range levels {
		if l.KeyID == "" {
			orgLevel = l.Level
		} else {
			keys = append(keys, fmt.Sprintf("key %s\t%s", l.KeyID, l.Level))
		}
	}
	fmt.Fprintf(tw, "org %s\t%s\n", o.Name, orgLevel)
	for _, k := range keys {
		fmt.Fprintln(tw, k)
	}
	return tw.Flush()
}

// listPage is how many events a command reads at a time.
const listPage = 1000

// eachEvent calls fn for each of the org's events at or after since, in
// chain order.
func (e *env) eachEvent(st server.Store, orgID string, since time.Time, fn func(edge.AuditEvent) error) error {
	after := int64(0)
	for {
		evs, err := st.AuditEvents(e.ctx, orgID, edge.AuditQuery{Since: since, AfterSeq: after, Limit: listPage})
		if err != nil {
			return err
		}
		for _, ev := range evs {
			if err := fn(ev); err != nil {
				return err
			}
			after = ev.Seq
		}
		if len(evs) < listPage {
			return nil
		}
	}
}

func parseSince(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, usagef("--since: give an RFC 3339 time such as 2025-01-31T00:00:00Z")
	}
	return t, nil
}

func (e *env) auditList(args []string) error {
	f := newFlags("audit list", true)
	org := f.String("org", "", "org id or name")
	sinceFlag := f.String("since", "", "events at or after this time (RFC 3339)")
	if pos, err := f.parse(args); err != nil {
		return err
	} else if len(pos) > 0 {
		return usagef("unexpected argument %q", pos[0])
	}
	since, err := parseSince(*sinceFlag)
	if err != nil {
		return err
	}
	return e.withOrg(f, *org, func(_ config.Config, st server.Store, o edge.Org) error {
		enc := json.NewEncoder(e.stdout)
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		if !f.json {
			fmt.Fprintln(tw, "SEQ\tTIME\tID\tKIND\tWHAT\tKEY/ACTOR\tSTATUS\tLEVEL\tCONTENT")
		}
		err := e.eachEvent(st, o.ID, since, func(ev edge.AuditEvent) error {
			it, err := audit.ItemOf(ev)
			if err != nil {
				return fmt.Errorf("event %s: %w", ev.ID, err)
			}
			if f.json {
				return enc.Encode(it)
			}
			what, who := it.Model, it.KeyID
			if it.Kind == edge.AuditAdmin {
				what, who = it.Action, it.Via+":"+it.Actor
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", it.Seq, it.Time.Format(time.RFC3339), it.ID, it.Kind, what, who, it.Status, it.Level, it.Content)
			return nil
		})
		if f.json {
			return err
		}
		if ferr := tw.Flush(); err == nil {
			err = ferr
		}
		return err
	})
}

func (e *env) auditShow(args []string) error {
	f := newFlags("audit show", true)
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("give the event's id")
	}
	return e.withStore(f, func(cfg config.Config, st server.Store) error {
		ev, err := st.AuditEventByID(e.ctx, pos[0])
		if errors.Is(err, edge.ErrNotFound) {
			return fmt.Errorf("no audit event %q", pos[0])
		}
		if err != nil {
			return err
		}
		it, err := audit.ItemOf(ev)
		if err != nil {
			return err
		}
		var content audit.Content
		var contentErr error
		switch {
		case ev.ContentRemoved != "":
			contentErr = fmt.Errorf("the content of event %s was removed (%s)", ev.ID, ev.ContentRemoved)
		case len(ev.Content) > 0:
			kr, err := e.keyring(cfg, st)
			if err != nil {
				return err
			}
			if content, err = audit.OpenContent(e.ctx, kr, ev); err != nil {
				contentErr = err
			}
		}
		if f.json {
			if err := json.NewEncoder(e.stdout).Encode(audit.ShownOf(it, content)); err != nil {
				return err
			}
			return contentErr
		}
		if err := e.printEvent(it, ev); err != nil {
			return err
		}
		if contentErr != nil {
			return contentErr
		}
		if len(ev.Content) > 0 {
			// Verbatim: the bytes as the client sent and received them.
			fmt.Fprintf(e.stdout, "request (%d bytes):\n%s\nresponse (%d bytes):\n%s\n",
				len(content.Request), content.Request, len(content.Response), content.Response)
		}
		return nil
	})
}

func (e *env) printEvent(it audit.Item, ev edge.AuditEvent) error {
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	row := func(k string, v any) {
		if s := fmt.Sprint(v); s != "" && s != "0" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, s)
		}
	}
	row("id", it.ID)
	row("org", ev.OrgID)
	row("seq", it.Seq)
	row("time", it.Time.Format(time.RFC3339Nano))
	row("kind", it.Kind)
	if it.Kind == edge.AuditAdmin {
		row("action", it.Action)
		row("by", it.Via+": "+it.Actor)
		row("target", it.Target)
		for k, v := range it.Details {
			row("  "+k, v)
		}
	} else {
		row("level", it.Level)
		row("key", it.KeyID)
		row("route", it.Provider+" "+it.Endpoint)
		row("model", it.Model)
		row("status", it.Status)
		row("cache", it.Cache)
		row("memory", it.Memory)
		if it.CostUSD != nil {
			row("cost_usd", fmt.Sprintf("%.9f", *it.CostUSD))
		}
	}
	row("content", it.Content)
	if len(ev.RequestDigest) > 0 {
		row("request_digest", hex.EncodeToString(ev.RequestDigest))
		row("response_digest", hex.EncodeToString(ev.ResponseDigest))
	}
	row("hash", hex.EncodeToString(ev.Hash))
	return tw.Flush()
}

func (e *env) auditVerify(args []string) error {
	f := newFlags("audit verify", true)
	org := f.String("org", "", "org id or name")
	if pos, err := f.parse(args); err != nil {
		return err
	} else if len(pos) > 0 {
		return usagef("unexpected argument %q", pos[0])
	}
	return e.withOrg(f, *org, func(cfg config.Config, st server.Store, o edge.Org) error {
		kr, err := e.keyring(cfg, st)
		if err != nil {
			return err
		}
		r, err := audit.Verify(e.ctx, st, o.ID, kr, audit.StoredSecrets(st, kr))
		if err != nil {
			return err
		}
		if f.json {
			if err := json.NewEncoder(e.stdout).Encode(r); err != nil {
				return err
			}
		}
		if r.Break != nil {
			return r.Break
		}
		if !f.json {
			fmt.Fprintf(e.stdout, "org %s: audit chain holds: %d events, head seq %d hash %s; content of %d full events checked, %d removed\n",
				o.Name, r.Events, r.HeadSeq, hex.EncodeToString(r.Head), r.ContentChecked, r.ContentRemoved)
		}
		return nil
	})
}

func (e *env) auditExport(args []string) error {
	f := newFlags("audit export", false)
	org := f.String("org", "", "org id or name")
	sinceFlag := f.String("since", "", "events at or after this time (RFC 3339)")
	if pos, err := f.parse(args); err != nil {
		return err
	} else if len(pos) > 0 {
		return usagef("unexpected argument %q", pos[0])
	}
	since, err := parseSince(*sinceFlag)
	if err != nil {
		return err
	}
	return e.withOrg(f, *org, func(_ config.Config, st server.Store, o edge.Org) error {
		enc := json.NewEncoder(e.stdout)
		return e.eachEvent(st, o.ID, since, func(ev edge.AuditEvent) error {
			rec, err := audit.RecordOf(ev)
			if err != nil {
				return fmt.Errorf("event %s: %w", ev.ID, err)
			}
			return enc.Encode(rec)
		})
	})
}
