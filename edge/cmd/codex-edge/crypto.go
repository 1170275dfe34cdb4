package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"text/tabwriter"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/audit"
	"github.com/persiv/codex/edge/config"
	"github.com/persiv/codex/edge/keyring"
	"github.com/persiv/codex/edge/keyring/awskms"
	"github.com/persiv/codex/edge/keyring/kek"
	"github.com/persiv/codex/edge/server"
)

func (e *env) keyring(cfg config.Config, st server.Store) (*keyring.Keyring, error) {
	// Subcommands report what they did on stdout; the log carries warnings
	// only (such as the local master key's development-only notice).
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return server.OpenKeyring(e.ctx, cfg, st, e.getenv, log)
}

func (e *env) keyringOrgs(cfg config.Config, st server.Store) (*keyring.Keyring, *kek.OrgKeys, error) {
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return server.OpenKeyringOrgs(e.ctx, cfg, st, e.getenv, log)
}

// backupExposure says whether a backup of the org's data keys taken
// earlier could still be opened: under the shared CODEX_KEK by whoever
// holds it ("shared"); under the org's own key only while that key works
// ("own key: usable" / "own key: refused", from one probe of the key).
func (e *env) backupExposure(orgs *kek.OrgKeys, orgID string) string {
	if orgs == nil || orgs.Ref(orgID) == "" {
		return "shared"
	}
	p, ok := orgs.Master(orgID).(keyring.Prober)
	if !ok {
		return "own key"
	}
	switch err := p.Probe(e.ctx); {
	case err == nil:
		return "own key: usable"
	case errors.Is(err, keyring.ErrUnreadable):
		return "own key: refused"
	default:
		return "own key: unknown"
	}
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
		kr, orgs, err := e.keyringOrgs(cfg, st)
		if err != nil {
			return err
		}
		list, err := kr.Status(e.ctx, id)
		if err != nil {
			return err
		}
		exposure := map[string]string{}
		for _, k := range list {
			if _, ok := exposure[k.OrgID]; !ok {
				exposure[k.OrgID] = e.backupExposure(orgs, k.OrgID)
			}
		}
		if f.json {
			enc := json.NewEncoder(e.stdout)
			for _, k := range list {
				m := map[string]any{"org_id": k.OrgID, "dek_id": k.DEKID.String(), "generation": k.Generation, "state": k.State,
					"master_ref": k.MasterRef, "master_version": k.MasterVersion, "created_at": k.CreatedAt, "age_seconds": int64(k.Age.Seconds()),
					"seals": k.Seals, "earlier_backups": exposure[k.OrgID]}
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
		fmt.Fprintln(tw, "ORG\tGEN\tSTATE\tMASTER KEY\tVERSION\tAGE\tSEALS\tEARLIER BACKUPS")
		for _, k := range list {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%d\t%s\n", k.OrgID, k.Generation, k.State, k.MasterRef, k.MasterVersion, k.Age.Round(time.Second), k.Seals, exposure[k.OrgID])
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintln(e.stdout, "earlier backups: shared = a backup taken before a shred still opens with the shared master key; own key: refused = the org's own key is disabled or deleted and no copy opens")
		return nil
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
	deleteIn := f.Int("schedule-key-deletion", 0, "with the org's own KMS key: also schedule its deletion after DAYS (7-30), so no backup can open the org's data again")
	if _, err := f.parse(args); err != nil {
		return err
	}
	if !*yes {
		return usagef("crypto shred destroys the org's data keys: every credential, cache entry and record sealed for it becomes unreadable for good; add --yes to confirm")
	}
	return e.withOrg(f, *org, func(cfg config.Config, st server.Store, o edge.Org) error {
		return e.shredOrg(cfg, st, o, *deleteIn, e.stdout)
	})
}

// shredOrg destroys the org's data keys and everything sealed for it (see
// server.Shred), records it, and, with deleteIn days, schedules the
// deletion of the org's own KMS key; it reports to out.
func (e *env) shredOrg(cfg config.Config, st server.Store, o edge.Org, deleteIn int, out io.Writer) error {
	kr, orgs, err := e.keyringOrgs(cfg, st)
	if err != nil {
		return err
	}
	var own *awskms.MasterKey
	if deleteIn != 0 {
		ref := ""
		if orgs != nil {
			ref = orgs.Ref(o.ID)
		}
		if ref == "" {
			return usagef("--schedule-key-deletion: org %s has no own master key (it uses the shared %s, which other orgs need)", o.Name, kek.Env)
		}
		if users := orgs.Distinct()[ref]; len(users) > 1 {
			return fmt.Errorf("--schedule-key-deletion: the key %s is also the master key of %d other orgs; move them first (orgs kek set)", ref, len(users)-1)
		}
		m, ok := orgs.Master(o.ID).(*awskms.MasterKey)
		if !ok {
			return fmt.Errorf("--schedule-key-deletion: the org's master key %s is not an AWS KMS key that could be opened", ref)
		}
		own = m
	}
	r, err := server.Shred(e.ctx, cfg, st, kr, o.ID)
	if err != nil {
		return fmt.Errorf("%w (run crypto shred again to finish)", err)
	}
	if err := e.recordAdmin(st, audit.Change{OrgID: o.ID, Action: "crypto.shred", Details: map[string]string{
		"data_keys_destroyed": fmt.Sprint(r.DataKeys), "audit_contents_removed": fmt.Sprint(r.AuditContents),
		"credentials_removed": fmt.Sprint(r.Sealed.Credentials), "memories_removed": fmt.Sprint(r.Sealed.Memories),
		"cache_entries_removed": fmt.Sprint(r.CacheEntries)}}); err != nil {
		return err
	}
	if own != nil {
		at, err := own.ScheduleDeletion(e.ctx, deleteIn)
		if err != nil {
			return fmt.Errorf("data keys destroyed, but: %w", err)
		}
		fmt.Fprintf(out, "org %s: KMS key %s is scheduled for deletion on %s; until then, cancelling the deletion would let an earlier backup open the org's data again\n", o.Name, own.KeyID(), at.UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(out, "org %s: %d data keys destroyed; its encrypted content is unreadable now (running edges drop their cached keys and cache entries within CODEX_CHANGE_POLL)\n", o.Name, r.DataKeys)
	secrets := 0
	if r.Sealed.FingerprintSecret {
		secrets = 1
	}
	fmt.Fprintf(out, "removed: %d sealed provider credentials, %d fingerprint secret, the text of %d memories, the content of %d audit events (their events and chain kept), %d cache entries in Redis\n",
		r.Sealed.Credentials, secrets, r.Sealed.Memories, r.AuditContents, r.CacheEntries)
	if r.Compacted {
		fmt.Fprintln(out, "embedded store: WAL checkpointed and truncated, file vacuumed; none of the org's earlier ciphertext remains in it")
	}
	fmt.Fprintln(out, "Set provider keys again to resume.")
	return nil
}
