package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/apikey"
	"github.com/persiv/codex/edge/audit"
	"github.com/persiv/codex/edge/config"
	"github.com/persiv/codex/edge/keyring"
	"github.com/persiv/codex/edge/keyring/kek"
	"github.com/persiv/codex/edge/server"
)

func (e *env) orgsCreate(args []string) error {
	f := newFlags("orgs create", false)
	kekFlag := f.String("kek", "", "the org's own master key, awskms:<key-arn> or byok-ephemeral (default: the edge's CODEX_KEK)")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || strings.TrimSpace(pos[0]) == "" {
		return usagef("give the org's name")
	}
	ref, err := kek.ParseOrg(*kekFlag)
	if err != nil {
		return usagef("--kek: %v", err)
	}
	return e.withStore(f, func(_ config.Config, st server.Store) error {
		o := edge.Org{ID: apikey.NewID("org_"), Name: strings.TrimSpace(pos[0]), CreatedAt: time.Now().UTC(), MasterKey: ref}
		if err := e.checkOrgKey(o.ID, ref); err != nil {
			return err
		}
		if err := st.CreateOrg(e.ctx, o); err != nil {
			if errors.Is(err, edge.ErrConflict) {
				return fmt.Errorf("an org named %q exists already", o.Name)
			}
			return err
		}
		details := map[string]string{"name": o.Name}
		if ref != "" {
			// The master key chosen at creation, as orgs kek set records it.
			details["kek"] = ref
		}
		if err := e.recordAdmin(st, audit.Change{OrgID: o.ID, Action: "orgs.create", Target: o.ID, Details: details}); err != nil {
			return err
		}
		fmt.Fprintln(e.stdout, o.ID)
		return nil
	})
}

func (e *env) orgsList(args []string) error {
	f := newFlags("orgs list", true)
	if _, err := f.parse(args); err != nil {
		return err
	}
	return e.withStore(f, func(_ config.Config, st server.Store) error {
		orgs, err := st.Orgs(e.ctx)
		if err != nil {
			return err
		}
		if f.json {
			enc := json.NewEncoder(e.stdout)
			for _, o := range orgs {
				if err := enc.Encode(map[string]any{"id": o.ID, "name": o.Name, "created_at": o.CreatedAt}); err != nil {
					return err
				}
			}
			return nil
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tCREATED")
		for _, o := range orgs {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", o.ID, o.Name, o.CreatedAt.Format(time.RFC3339))
		}
		return tw.Flush()
	})
}

// orgsKEKSet moves an org to its own master key, or back to the edge's
// default: it records the new reference first (running edges wrap the
// org's new data keys under it from their next change-feed poll), then
// re-wraps the org's existing data keys, one at a time with progress.
// Run again after an interruption, it leaves the keys already moved alone.
func (e *env) orgsKEKSet(args []string) error {
	f := newFlags("orgs kek set", false)
	org := f.String("org", "", "org id or name")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("give the master key: awskms:<key-arn>, %s or default", kek.Ephemeral)
	}
	ref, err := kek.ParseOrg(pos[0])
	if err != nil {
		return usagef("%v", err)
	}
	return e.withOrg(f, *org, func(cfg config.Config, st server.Store, o edge.Org) error {
		if err := e.checkOrgKey(o.ID, ref); err != nil {
			return err
		}
		if o.MasterKey != ref {
			if err := st.SetOrgMasterKey(e.ctx, o.ID, ref); err != nil {
				return err
			}
			// Recorded now: the org's new data keys are wrapped by the
			// new key from here on, whether or not the re-wrap below
			// completes.
			if err := e.recordAdmin(st, audit.KEKSet(o.ID, o.MasterKey, ref)); err != nil {
				return err
			}
		}
		if ref == kek.Ephemeral {
			return e.waitForEphemeral(st, o)
		}
		kr, err := e.keyring(cfg, st)
		if err != nil {
			return err
		}
		res, err := kr.RewrapOrg(e.ctx, o.ID, kek.Previous(e.ctx), func(ev keyring.RewrapEvent) {
			state := "already under it"
			switch {
			case ev.Err != nil:
				state = "FAILED: " + ev.Err.Error()
			case ev.Rewrapped:
				state = "rewrapped " + ev.From.Ref + ":" + ev.From.Version + " -> " + ev.To.Ref + ":" + ev.To.Version
			}
			fmt.Fprintf(e.stdout, "[%d/%d] generation %d: %s\n", ev.N, ev.Total, ev.Generation, state)
		})
		target := ref
		if target == "" {
			target = "the default master key (" + cfg.KEK + ")"
		}
		fmt.Fprintf(e.stdout, "org %s: master key is %s; %d data keys: %d rewrapped, %d already under it, %d failed\n",
			o.Name, target, res.Total, res.Rewrapped, res.Current, res.Failed)
		if err != nil {
			return fmt.Errorf("%w (run the command again to resume; keys that failed stay wrapped by their old master key, which must stay usable until they are moved)", err)
		}
		return nil
	})
}

// waitForEphemeral reports what happens to an org moved to byok-ephemeral:
// its key exists only in a running edge's memory, so this process cannot
// re-wrap; the edge that receives the key (PUT /admin/v1/orgs/{org}/byok)
// moves the org's data keys under it. Until then they stay under the
// earlier master key, which keeps opening them.
func (e *env) waitForEphemeral(st server.Store, o edge.Org) error {
	deks, err := st.DEKs(e.ctx, o.ID)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "org %s: master key is %s; the org's key is held only in a running edge's memory\n", o.Name, kek.Ephemeral)
	if len(deks) == 0 {
		fmt.Fprintln(e.stdout, "next: send the org's 256-bit key to a running edge: PUT /admin/v1/orgs/"+o.Name+"/byok (TLS and the admin token); its data keys are made under it")
		return nil
	}
	fmt.Fprintf(e.stdout, "%d data keys: those not yet wrapped by the org's key stay under their earlier master key, which keeps opening them, until the key arrives\n", len(deks))
	fmt.Fprintln(e.stdout, "next: send the org's 256-bit key to a running edge: PUT /admin/v1/orgs/"+o.Name+"/byok (TLS and the admin token); that edge re-wraps the data keys under it and answers how many it moved; `crypto status --org "+o.Name+"` then shows them under byok")
	return nil
}

// orgsDelete destroys the org's data keys (crypto shred), then removes the
// org and every row that names it from the store, and records the deletion
// among the deployment's org deletions (the org's own audit chain goes
// with it). Without --yes it only says what it would delete.
func (e *env) orgsDelete(args []string) error {
	f := newFlags("orgs delete", false)
	org := f.String("org", "", "org id or name")
	yes := f.Bool("yes", false, "confirm: the org and everything of it are deleted, for good")
	if _, err := f.parse(args); err != nil {
		return err
	}
	if !*yes {
		var what string
		err := e.withOrg(f, *org, func(_ config.Config, st server.Store, o edge.Org) error {
			var err error
			what, err = orgContents(e, st, o)
			return err
		})
		if err != nil {
			return err
		}
		return usagef("orgs delete would destroy %s; add --yes to confirm", what)
	}
	return e.withOrg(f, *org, func(cfg config.Config, st server.Store, o edge.Org) error {
		id, name := o.ID, o.Name
		// Shred first: should the removal below fail, the org's content
		// is unreadable already, and running the command again finishes
		// it. Its advice (set provider keys again) does not apply.
		if err := e.shredOrg(cfg, st, o, 0, io.Discard); err != nil {
			return fmt.Errorf("crypto shred: %w", err)
		}
		by := audit.CLI()
		d, err := st.DeleteOrg(e.ctx, edge.OrgDeletion{OrgID: id, Actor: by.Who, Via: by.Via})
		if err != nil {
			return fmt.Errorf("the org's data keys are destroyed, but removing it failed (run the command again): %w", err)
		}
		// The shred compacted the embedded store before these rows went:
		// compact again, so the deleted rows leave its file and WAL too.
		if c, ok := st.(interface{ Compact(context.Context) error }); ok {
			if err := c.Compact(e.ctx); err != nil {
				return fmt.Errorf("org deleted, but compacting the store failed, so its rows may remain in free pages until the next shred compacts it: %w", err)
			}
		}
		var total int64
		tables := make([]string, 0, len(d.Rows))
		for t, n := range d.Rows {
			total += n
			if n > 0 {
				tables = append(tables, fmt.Sprintf("%s %d", t, n))
			}
		}
		slices.Sort(tables)
		fmt.Fprintf(e.stdout, "org %s (%s) deleted: data keys destroyed, %d rows removed (%s); its keys stop working on running edges within CODEX_CHANGE_POLL. The deletion is recorded among the deployment's org deletions (orgs deletions).\n",
			name, id, total, strings.Join(tables, ", "))
		return nil
	})
}

// orgContents describes what deleting the org would remove.
func orgContents(e *env, st server.Store, o edge.Org) (string, error) {
	keys, err := st.Keys(e.ctx, o.ID)
	if err != nil {
		return "", err
	}
	providers, err := st.Providers(e.ctx, o.ID)
	if err != nil {
		return "", err
	}
	limits, err := st.Limits(e.ctx, o.ID)
	if err != nil {
		return "", err
	}
	budgets, err := st.Budgets(e.ctx, o.ID)
	if err != nil {
		return "", err
	}
	memories, err := st.Memories(e.ctx, o.ID)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("org %s (%s): its data keys (crypto shred), %d gateway keys, %d provider settings, %d limits, %d budgets, %d memories, "+
		"and all its audit events, request metadata, spend, settings and the org itself",
		o.Name, o.ID, len(keys), len(providers), len(limits), len(budgets), len(memories)), nil
}

// orgsDeletions lists the deployment's record of deleted orgs.
func (e *env) orgsDeletions(args []string) error {
	f := newFlags("orgs deletions", true)
	if _, err := f.parse(args); err != nil {
		return err
	}
	return e.withStore(f, func(_ config.Config, st server.Store) error {
		dels, err := st.OrgDeletions(e.ctx)
		if err != nil {
			return err
		}
		if f.json {
			enc := json.NewEncoder(e.stdout)
			for _, d := range dels {
				if err := enc.Encode(map[string]any{"org_id": d.OrgID, "time": d.Time, "actor": d.Actor, "via": d.Via, "rows": d.Rows}); err != nil {
					return err
				}
			}
			return nil
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ORG ID\tDELETED\tBY\tVIA\tROWS")
		for _, d := range dels {
			var rows int64
			for _, n := range d.Rows {
				rows += n
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", d.OrgID, d.Time.Format(time.RFC3339), d.Actor, d.Via, rows)
		}
		return tw.Flush()
	})
}

// orgKeyCheckTimeout bounds the check that an org's own KMS key can be
// used before it is recorded.
const orgKeyCheckTimeout = 30 * time.Second

// checkOrgKey makes sure this edge can use an org's own KMS key, under
// the org's encryption context, before the key is recorded: recorded
// unusable, it would make every new data key of the org fail.
func (e *env) checkOrgKey(orgID, ref string) error {
	if ref == "" || ref == kek.Ephemeral {
		return nil
	}
	ctx, cancel := context.WithTimeout(e.ctx, orgKeyCheckTimeout)
	defer cancel()
	m, err := kek.OpenOrg(ctx, ref)
	if err != nil {
		return fmt.Errorf("open the org's master key %s: %w", ref, err)
	}
	if err := kek.ProbeOrg(ctx, m, orgID); err != nil {
		return fmt.Errorf("the org's master key %s cannot be used by this edge (nothing was changed): %w; the key policy must let the edge's role use it with the encryption context org_id=%s (README, \"Per-org master keys\")", ref, err, orgID)
	}
	return nil
}
