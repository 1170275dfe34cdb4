package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"text/tabwriter"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/audit"
	"github.com/persiv/codex/edge/config"
	"github.com/persiv/codex/edge/keyring"
	"github.com/persiv/codex/edge/server"
)

func (e *env) keyring(cfg config.Config, st server.Store) (*keyring.Keyring, error) {
	// Subcommands report what they did on stdout; the log carries warnings
	// only (such as the local master key's development-only notice).
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return server.OpenKeyring(e.ctx, cfg, st, e.getenv, log)
}

func (e *env) cryptoStatus(args []string) error {
	f := newFlags("crypto status", true)
	org := f.String("org", "", "org id or name (default: every org)")
	if _, err := f.parse(args); err != nil {
		return err
	}
	return e.withStore(f, func(cfg config.Config, st server.Store) error {
		id := ""
		if *org != "" {
			o, err := e.findOrg(st, *org)
			if err != nil {
				return err
			}
			id = o.ID
		}
		kr, err := e.keyring(cfg, st)
		if err != nil {
			return err
		}
		list, err := kr.Status(e.ctx, id)
		if err != nil {
			return err
		}
		if f.json {
			enc := json.NewEncoder(e.stdout)
			for _, k := range list {
				m := map[string]any{"org_id": k.OrgID, "dek_id": k.DEKID.String(), "generation": k.Generation, "state": k.State,
					"master_ref": k.MasterRef, "master_version": k.MasterVersion, "created_at": k.CreatedAt, "age_seconds": int64(k.Age.Seconds()),
					"seals": k.Seals}
				if !k.RewrappedAt.IsZero() {
					m["rewrapped_at"] = k.RewrappedAt
				}
				if err := enc.Encode(m); err != nil {
					return err
				}
			}
			return nil
		}
		spec := cfg.KEK
		fmt.Fprintf(e.stdout, "master key: %s\n", spec)
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ORG\tGEN\tSTATE\tMASTER KEY\tVERSION\tAGE\tSEALS")
		for _, k := range list {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%d\n", k.OrgID, k.Generation, k.State, k.MasterRef, k.MasterVersion, k.Age.Round(time.Second), k.Seals)
		}
		return tw.Flush()
	})
}

func (e *env) cryptoRotate(args []string) error {
	f := newFlags("crypto rotate", false)
	org := f.String("org", "", "org id or name")
	if _, err := f.parse(args); err != nil {
		return err
	}
	return e.withOrg(f, *org, func(cfg config.Config, st server.Store, o edge.Org) error {
		kr, err := e.keyring(cfg, st)
		if err != nil {
			return err
		}
		k, err := kr.Rotate(e.ctx, o.ID)
		if err != nil {
			return err
		}
		if err := e.recordAdmin(st, audit.Change{OrgID: o.ID, Action: "crypto.rotate", Details: map[string]string{"generation": fmt.Sprint(k.Generation)}}); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "org %s: data key generation %d is active for new writes; older generations still open existing data\n", o.Name, k.Generation)
		return nil
	})
}

func (e *env) cryptoRewrap(args []string) error {
	f := newFlags("crypto rewrap", false)
	if _, err := f.parse(args); err != nil {
		return err
	}
	return e.withStore(f, func(cfg config.Config, st server.Store) error {
		kr, err := e.keyring(cfg, st)
		if err != nil {
			return err
		}
		res, err := kr.Rewrap(e.ctx, func(ev keyring.RewrapEvent) {
			state := "already current"
			switch {
			case ev.Err != nil:
				state = "FAILED: " + ev.Err.Error()
			case ev.Rewrapped:
				state = "rewrapped " + ev.From.Version + " -> " + ev.To.Version
			}
			fmt.Fprintf(e.stdout, "[%d/%d] org %s generation %d: %s\n", ev.N, ev.Total, ev.OrgID, ev.Generation, state)
		})
		fmt.Fprintf(e.stdout, "%d data keys: %d rewrapped, %d already current, %d failed\n", res.Total, res.Rewrapped, res.Current, res.Failed)
		if aerr := e.recordAdminAll(st, audit.Change{Action: "crypto.rewrap", Details: map[string]string{
			"rewrapped": fmt.Sprint(res.Rewrapped), "current": fmt.Sprint(res.Current), "failed": fmt.Sprint(res.Failed)}}); aerr != nil && err == nil {
			return aerr
		}
		if err != nil {
			return fmt.Errorf("%w (the failed keys stay wrapped by their old master key version; keep it configured until they are rewrapped or their content expires)", err)
		}
		return nil
	})
}

func (e *env) cryptoShred(args []string) error {
	f := newFlags("crypto shred", false)
	org := f.String("org", "", "org id or name")
	yes := f.Bool("yes", false, "confirm: everything encrypted for this org becomes unreadable, for good")
	if _, err := f.parse(args); err != nil {
		return err
	}
	if !*yes {
		return usagef("crypto shred destroys the org's data keys: every credential, cache entry and record sealed for it becomes unreadable for good; add --yes to confirm")
	}
	return e.withOrg(f, *org, func(cfg config.Config, st server.Store, o edge.Org) error {
		kr, err := e.keyring(cfg, st)
		if err != nil {
			return err
		}
		n, err := kr.Shred(e.ctx, o.ID)
		if err != nil {
			return err
		}
		// The audit log keeps its events and chain; their content, which
		// the destroyed keys sealed, goes.
		removed, err := st.RemoveAuditContent(e.ctx, o.ID, time.Time{}, edge.ContentRemovedShred)
		if err != nil {
			return fmt.Errorf("data keys destroyed, but removing the audit log's content failed (run crypto shred again): %w", err)
		}
		if err := e.recordAdmin(st, audit.Change{OrgID: o.ID, Action: "crypto.shred", Details: map[string]string{
			"data_keys_destroyed": fmt.Sprint(n), "audit_contents_removed": fmt.Sprint(removed)}}); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "org %s: %d data keys destroyed; its encrypted content is unreadable now (running edges drop their cached keys within CODEX_CHANGE_POLL); the content of %d audit events was removed, their events and chain kept. Set provider keys again to resume.\n", o.Name, n, removed)
		return nil
	})
}
