package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/audit"
	"github.com/persiv/codex/edge/config"
	"github.com/persiv/codex/edge/keyring"
	"github.com/persiv/codex/edge/keyring/awskms"
	"github.com/persiv/codex/edge/keyring/byok"
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

// orgStatus is one org's line of `crypto status` (DESIGN §11).
type orgStatus struct {
	OrgID string `json:"org_id"`
	Name  string `json:"name"`
	// MasterKey: "default", "awskms:<arn>" or "byok-ephemeral".
	MasterKey string `json:"master_key"`
	// Generation of the active data key, 0 when the org has none (new, or
	// shredded).
	Generation int `json:"generation"`
	// BackupOpenable: could a copy of the org's data keys taken before a
	// shred (a backup of the store) still be opened today? true: on the
	// default key (whoever holds CODEX_KEK), on its own key while that key
	// still works, or with data keys still under an earlier master key;
	// false: its own key refuses (disabled, revoked, deleted or pending
	// deletion); null: not known (the key could not be probed, or the
	// ephemeral key is held by the customer alone).
	BackupOpenable *bool  `json:"backup_openable"`
	Backup         string `json:"backup"`
	// WaitingForKey: on byok-ephemeral, and the running edge has not been
	// sent the key since it started; null when the edge could not be
	// asked; false for every other org.
	WaitingForKey *bool          `json:"waiting_for_key"`
	DataKeys      []dekStatusOut `json:"data_keys"`
}

// dekStatusOut is one data key of an org, for operators.
type dekStatusOut struct {
	DEKID         string     `json:"dek_id"`
	Generation    int        `json:"generation"`
	State         string     `json:"state"`
	MasterRef     string     `json:"master_ref"`
	MasterVersion string     `json:"master_version"`
	CreatedAt     time.Time  `json:"created_at"`
	RewrappedAt   *time.Time `json:"rewrapped_at,omitempty"`
	AgeSeconds    int64      `json:"age_seconds"`
	Seals         int64      `json:"seals"`
}

// The backup states of crypto status (the JSON "backup", the human BACKUP).
const (
	backupShared      = "shared"
	backupOwnUsable   = "own key: usable"
	backupOwnRefused  = "own key: refused"
	backupOwnUnknown  = "own key: unknown"
	backupEarlierKey  = "earlier master key"
	backupEdgeHolds   = "own key: held by the running edge"
	backupCustomerKey = "own key: held by the customer"
)

// probeOwnKey probes the org's own AWS KMS key: usable, refused, or
// unknown (no definitive answer).
func (e *env) probeOwnKey(orgs *kek.OrgKeys, orgID string) (string, *bool) {
	if orgs == nil {
		return backupOwnUnknown, nil
	}
	p, ok := orgs.Master(orgID).(keyring.Prober)
	if !ok {
		return backupOwnUnknown + " (the key could not be opened)", nil
	}
	switch err := p.Probe(e.ctx); {
	case err == nil:
		return backupOwnUsable, ptr(true)
	case errors.Is(err, keyring.ErrUnreadable):
		return backupOwnRefused, ptr(false)
	default:
		return backupOwnUnknown + " (probe: " + err.Error() + ")", nil
	}
}

func ptr[T any](v T) *T { return &v }

// underEarlier counts the org's data keys not wrapped by its own master
// key ref: an interrupted `orgs kek set`, or an ephemeral key not yet sent,
// leaves them under the earlier one (the default, usually), which still
// opens them and any backup of them. With CODEX_KEK=byok an ephemeral
// org's earlier keys look like its own and are not counted.
func underEarlier(ref string, deks []keyring.KeyStatus) int {
	n := 0
	for _, d := range deks {
		switch ref {
		case kek.Ephemeral:
			if d.MasterRef != byok.Ref {
				n++
			}
		default:
			arn := strings.TrimPrefix(ref, string(kek.AWSKMS)+":")
			if d.MasterRef != awskms.Ref || (strings.HasPrefix(arn, "arn:") && d.MasterVersion != arn) {
				n++
			}
		}
	}
	return n
}

// cryptoStatus prints one entry per org (every org in the store, shredded
// ones included: that is when the answer matters), per DESIGN §11. What
// only the running edge knows (which ephemeral keys it holds) it asks the
// edge's admin API, and only when some org is on byok-ephemeral.
func (e *env) cryptoStatus(args []string) error {
	f := newFlags("crypto status", true)
	org := f.String("org", "", "org id or name (default: every org)")
	adminAddr := f.String("admin-addr", "", "the running edge's admin API, HOST:PORT (default: CODEX_ADMIN_LISTEN, on loopback)")
	if _, err := f.parse(args); err != nil {
		return err
	}
	return e.withStore(f, func(cfg config.Config, st server.Store) error {
		var list []edge.Org
		if *org != "" {
			o, err := e.findOrg(st, *org)
			if err != nil {
				return err
			}
			list = []edge.Org{o}
		} else {
			var err error
			if list, err = st.Orgs(e.ctx); err != nil {
				return err
			}
		}
		kr, orgs, err := e.keyringOrgs(cfg, st)
		if err != nil {
			return err
		}

		// The running edge, asked only when an org's key lives in its memory.
		var (
			edgeState *server.CryptoStatus
			edgeErr   error
			edgeAddr  string
		)
		if slices.ContainsFunc(list, func(o edge.Org) bool { return o.MasterKey == kek.Ephemeral }) {
			a, err := e.newAdminClient(cfg, *adminAddr)
			edgeAddr = a.addr
			if err == nil {
				var cs server.CryptoStatus
				if err = a.get(e.ctx, "/admin/v1/crypto/status", &cs); err == nil {
					edgeState = &cs
				}
			}
			edgeErr = err
		}

		probed := map[string]struct {
			text string
			ok   *bool
		}{}
		out := make([]orgStatus, 0, len(list))
		for _, o := range list {
			deks, err := kr.Status(e.ctx, o.ID)
			if err != nil {
				return err
			}
			s := orgStatus{OrgID: o.ID, Name: o.Name, MasterKey: o.MasterKey, WaitingForKey: ptr(false), DataKeys: []dekStatusOut{}}
			if s.MasterKey == "" {
				s.MasterKey = kek.Default
			}
			for _, d := range deks {
				if d.State == keyring.DEKActive {
					s.Generation = d.Generation
				}
				dk := dekStatusOut{DEKID: d.DEKID.String(), Generation: d.Generation, State: string(d.State), MasterRef: d.MasterRef,
					MasterVersion: d.MasterVersion, CreatedAt: d.CreatedAt, AgeSeconds: int64(d.Age.Seconds()), Seals: d.Seals}
				if !d.RewrappedAt.IsZero() {
					dk.RewrappedAt = &d.RewrappedAt
				}
				s.DataKeys = append(s.DataKeys, dk)
			}
			held := false
			if o.MasterKey == kek.Ephemeral {
				s.WaitingForKey = nil
				if edgeState != nil {
					held = slices.Contains(edgeState.KeyInMemory, o.ID)
					s.WaitingForKey = ptr(!held)
				}
			}
			switch n := underEarlier(o.MasterKey, deks); {
			case o.MasterKey == "":
				s.Backup, s.BackupOpenable = backupShared, ptr(true)
			case n > 0:
				s.Backup, s.BackupOpenable = fmt.Sprintf("%s: %d data keys still under it", backupEarlierKey, n), ptr(true)
			case o.MasterKey == kek.Ephemeral && held:
				s.Backup, s.BackupOpenable = backupEdgeHolds, ptr(true)
			case o.MasterKey == kek.Ephemeral:
				s.Backup = backupCustomerKey
			default:
				p, ok := probed[o.MasterKey]
				if !ok {
					p.text, p.ok = e.probeOwnKey(orgs, o.ID)
					probed[o.MasterKey] = p
				}
				s.Backup, s.BackupOpenable = p.text, p.ok
			}
			out = append(out, s)
		}

		unreachable := ""
		if edgeErr != nil {
			unreachable = fmt.Sprintf("running edge not reachable at %s: waiting_for_key unknown (%v)", edgeAddr, edgeErr)
		}
		if f.json {
			if unreachable != "" {
				fmt.Fprintln(e.stderr, unreachable)
			}
			enc := json.NewEncoder(e.stdout)
			for _, s := range out {
				if err := enc.Encode(s); err != nil {
					return err
				}
			}
			return nil
		}
		return printOrgStatus(e.stdout, cfg, out, edgeState != nil, edgeAddr, unreachable)
	})
}

// printOrgStatus prints crypto status for people: per org its facts, then
// a table of its data keys.
func printOrgStatus(w io.Writer, cfg config.Config, out []orgStatus, asked bool, addr, unreachable string) error {
	yesNo := func(b *bool) string {
		switch {
		case b == nil:
			return "unknown"
		case *b:
			return "yes"
		}
		return "no"
	}
	fmt.Fprintf(w, "default master key (CODEX_KEK): %s\n", cfg.KEK)
	if asked {
		fmt.Fprintf(w, "running edge asked at %s\n", addr)
	}
	if unreachable != "" {
		fmt.Fprintln(w, unreachable)
	}
	for _, s := range out {
		fmt.Fprintf(w, "\norg %s (%s)\n", s.Name, s.OrgID)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "  master key:\t%s\n", s.MasterKey)
		fmt.Fprintf(tw, "  generation:\t%d\n", s.Generation)
		fmt.Fprintf(tw, "  backup openable:\t%s (%s)\n", yesNo(s.BackupOpenable), s.Backup)
		fmt.Fprintf(tw, "  waiting for key:\t%s\n", yesNo(s.WaitingForKey))
		if err := tw.Flush(); err != nil {
			return err
		}
		if len(s.DataKeys) == 0 {
			fmt.Fprintln(w, "  no data keys")
			continue
		}
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  GEN\tSTATE\tMASTER KEY\tVERSION\tAGE\tSEALS")
		for _, k := range s.DataKeys {
			fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\t%d\n", k.Generation, k.State, k.MasterRef, k.MasterVersion, (time.Duration(k.AgeSeconds) * time.Second).String(), k.Seals)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	fmt.Fprintln(w, "\nbackup openable: could a backup taken before a shred still open the org's data? yes for the shared default key (whoever holds it)"+
		" and for an own key that still works; no once the org's own key is disabled, revoked or scheduled for deletion; unknown when it cannot be told"+
		" (an ephemeral key is held by the customer alone)")
	return nil
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
