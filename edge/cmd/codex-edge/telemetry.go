package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"runtime/debug"
	"time"

	"github.com/persiv/codex/edge/audit"
	"github.com/persiv/codex/edge/config"
	"github.com/persiv/codex/edge/keyring"
	"github.com/persiv/codex/edge/server"
	"github.com/persiv/codex/edge/telemetry"
	"github.com/persiv/codex/shared/wire"
)

// The telemetry subcommands act on the hybrid link's state that a running
// serve re-reads every second, so they take effect without a restart: on
// Postgres the deployment's state in the database (every replica's), on
// SQLite the files in CODEX_DATA_DIR/telemetry.

// linkState is the hybrid link's state as the CLI opened it.
type linkState struct {
	cfg  config.Config
	st   telemetry.State
	keys keyring.Store
}

// withTelemetry runs fn on the link's state the configuration selects
// (server.TelemetryState).
func (e *env) withTelemetry(f *flags, fn func(linkState) error) (err error) {
	cfg, err := e.config(f)
	if err != nil {
		return err
	}
	return e.withTelemetryCfg(cfg, fn)
}

func (e *env) withTelemetryCfg(cfg config.Config, fn func(linkState) error) (err error) {
	var store server.Store
	if cfg.DatabaseURL != "" {
		if store, err = e.openStore(cfg); err != nil {
			return err
		}
		defer closeStore(store, &err)
	}
	return e.onTelemetry(cfg, store, fn)
}

// onTelemetry runs fn on the link's state of an open store (nil: files).
func (e *env) onTelemetry(cfg config.Config, store server.Store, fn func(linkState) error) error {
	st, ks, err := server.TelemetryState(cfg, store)
	if err != nil {
		return err
	}
	return fn(linkState{cfg: cfg, st: st, keys: ks})
}

func (e *env) telemetryEnroll(args []string) error {
	f := newFlags("telemetry enroll", true)
	cpURL := f.String("url", "", "the control plane's URL, e.g. https://codex.example.com")
	token := f.String("token", "", "one-time enrollment token from the dashboard or 'codex-controlplane enroll-token create'")
	name := f.String("name", "", "a name for this edge in the dashboard (default: the host name)")
	if pos, err := f.parse(args); err != nil {
		return err
	} else if len(pos) > 0 {
		return usagef("unexpected argument %q", pos[0])
	}
	if *cpURL == "" || *token == "" {
		return usagef("--url and --token are required")
	}
	if *name == "" {
		host, _ := os.Hostname()
		*name = telemetry.Label(host)
	}
	if !wire.LabelChars.Valid(*name) {
		*name = "edge"
	}
	var (
		enr telemetry.Enrollment
		sh  telemetry.Sharing
	)
	err := e.withTelemetry(f, func(ls linkState) (err error) {
		if enr, err = e.enroll(ls, *cpURL, *token, *name, false); err != nil {
			return err
		}
		sh, err = ls.st.Sharing(e.ctx)
		return err
	})
	if err != nil {
		return err
	}
	err = e.withStore(f, func(_ config.Config, st server.Store) error {
		return e.recordAdminAll(st, enrollChange(enr, *cpURL))
	})
	if err != nil {
		return err
	}
	if f.json {
		return json.NewEncoder(e.stdout).Encode(map[string]any{"edge_id": enr.EdgeID, "org_id": enr.OrgID, "subject": enr.Subject, "nats_url": enr.NATSURL, "sharing": sh.On})
	}
	fmt.Fprintf(e.stdout, "enrolled as edge %s of control plane org %s (publishes on %s)\n", enr.EdgeID, enr.OrgID, enr.Subject)
	if !sh.On {
		fmt.Fprintln(e.stdout, "sharing is off: nothing is sent until you run 'codex-edge telemetry on'")
	}
	return nil
}

// enroll enrolls the edge (the deployment, on Postgres) into the control
// plane at cpURL; with once, only unless enrolled already, so replicas
// starting with the same single-use token enroll once.
func (e *env) enroll(ls linkState, cpURL, token, name string, once bool) (telemetry.Enrollment, error) {
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	kr, err := server.OpenKeyring(e.ctx, ls.cfg, ls.keys, e.getenv, log)
	if err != nil {
		return telemetry.Enrollment{}, err
	}
	client := ls.cfg.ControlplanePins.Client(&http.Client{Timeout: 30 * time.Second})
	if once {
		return telemetry.EnrollOnce(e.ctx, ls.st, kr, client, cpURL, token, name, version())
	}
	return telemetry.Enroll(e.ctx, ls.st, kr, client, cpURL, token, name, version())
}

// applyTelemetryConfig carries out what a deployment configured for the
// hybrid link: CODEX_SHARE_METRICS, and enrolling with
// CODEX_CONTROLPLANE_URL and CODEX_ENROLLMENT_TOKEN when not enrolled yet
// and sharing is to be on. With sharing off the edge does not connect to
// the control plane, not even to enroll: enrollment waits until sharing is
// switched on (telemetry on, the admin API) or is run explicitly
// (telemetry enroll). A failure is logged, never fatal: the edge serves
// without the link.
//
// What it changes is recorded in every org's audit log, by the variable
// that made the change; a failure to record is logged.
func (e *env) applyTelemetryConfig(cfg config.Config, store server.Store, log *slog.Logger) {
	record := func(setting string, c audit.Change) {
		if store == nil {
			return
		}
		if err := audit.AdminAll(e.ctx, store, audit.Config(setting), c); err != nil {
			log.Error("the change was made, but not recorded in the audit log", "action", c.Action, "err", err)
		}
	}
	err := e.onTelemetry(cfg, store, func(ls linkState) error {
		e.applyTelemetry(ls, log, record)
		return nil
	})
	if err != nil {
		log.Error("telemetry state unreadable", "err", err)
	}
}

func (e *env) applyTelemetry(ls linkState, log *slog.Logger, record func(setting string, c audit.Change)) {
	cfg := ls.cfg
	_, enrolled, err := ls.st.Enrollment(e.ctx)
	if err != nil {
		log.Error("telemetry state unreadable", "err", err)
		return
	}
	sh, err := ls.st.Sharing(e.ctx)
	if err != nil {
		log.Error("telemetry state unreadable", "err", err)
		return
	}
	on := sh.On
	if cfg.ShareMetrics != "" {
		on = cfg.ShareMetrics == "true"
	}
	if !enrolled && cfg.ControlplaneURL != "" {
		if !on {
			log.Info("sharing is off: enrollment with CODEX_CONTROLPLANE_URL waits until sharing is switched on",
				"hint", "'codex-edge telemetry on' or the admin API enrolls and switches on")
		} else if enr, err := e.enrollConfigured(ls); err != nil {
			log.Error("enrollment from CODEX_CONTROLPLANE_URL/CODEX_ENROLLMENT_TOKEN failed; serving without the control plane link",
				"err", err, "hint", "create a new token in the dashboard and restart, or run 'codex-edge telemetry enroll'")
		} else {
			enrolled = true
			log.Info("enrolled into the control plane", "edge", enr.EdgeID, "org", enr.OrgID)
			record("CODEX_ENROLLMENT_TOKEN", enrollChange(enr, cfg.ControlplaneURL))
		}
	}
	if cfg.ShareMetrics == "" {
		return
	}
	if on && !enrolled {
		log.Error("CODEX_SHARE_METRICS=true but the edge is not enrolled; sharing stays off")
		return
	}
	if err := ls.st.SetSharing(e.ctx, telemetry.Sharing{On: on, ChangedAt: time.Now().UTC(), By: "config"}); err != nil {
		log.Error("apply CODEX_SHARE_METRICS", "err", err)
		return
	}
	if on != sh.On {
		record("CODEX_SHARE_METRICS", audit.Change{Action: "telemetry.sharing", Details: map[string]string{"on": fmt.Sprint(on)}})
	}
}

// enrollConfigured enrolls with CODEX_CONTROLPLANE_URL and
// CODEX_ENROLLMENT_TOKEN under the host's name, unless enrolled already
// (by another replica).
func (e *env) enrollConfigured(ls linkState) (telemetry.Enrollment, error) {
	host, _ := os.Hostname()
	name := telemetry.Label(host)
	if !wire.LabelChars.Valid(name) {
		name = "edge"
	}
	return e.enroll(ls, ls.cfg.ControlplaneURL, ls.cfg.EnrollmentToken, name, true)
}

// enrollHook is server.Options.Enroll for a configured control plane.
func (e *env) enrollHook(cfg config.Config, store server.Store) func(context.Context) error {
	if cfg.ControlplaneURL == "" {
		return nil
	}
	return func(context.Context) error {
		return e.onTelemetry(cfg, store, func(ls linkState) error {
			_, err := e.enrollConfigured(ls)
			return err
		})
	}
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && wire.ModelChars.Valid(bi.Main.Version) {
		return bi.Main.Version
	}
	return "dev"
}

func (e *env) telemetrySet(on bool) func([]string) error {
	return func(args []string) error {
		name := "telemetry off"
		if on {
			name = "telemetry on"
		}
		f := newFlags(name, true)
		if pos, err := f.parse(args); err != nil {
			return err
		} else if len(pos) > 0 {
			return usagef("unexpected argument %q", pos[0])
		}
		var enrolled *telemetry.Enrollment // made here, to record
		var cpURL string
		err := e.withTelemetry(f, func(ls linkState) error {
			if on {
				if _, ok, err := ls.st.Enrollment(e.ctx); err != nil {
					return err
				} else if !ok && ls.cfg.ControlplaneURL != "" {
					// Enrollment deferred by serve while sharing was off.
					enr, err := e.enrollConfigured(ls)
					if err != nil {
						return fmt.Errorf("enroll with CODEX_CONTROLPLANE_URL: %w", err)
					}
					enrolled, cpURL = &enr, ls.cfg.ControlplaneURL
				} else if !ok {
					return fmt.Errorf("this edge is not enrolled: run 'codex-edge telemetry enroll --url URL --token TOKEN' first")
				}
			}
			return ls.st.SetSharing(e.ctx, telemetry.Sharing{On: on, ChangedAt: time.Now().UTC(), By: "cli"})
		})
		if enrolled != nil {
			// Recorded even if the switch failed: the enrollment stands.
			rerr := e.withStore(f, func(_ config.Config, st server.Store) error {
				return e.recordAdminAll(st, enrollChange(*enrolled, cpURL))
			})
			if err == nil {
				err = rerr
			}
		}
		if err != nil {
			return err
		}
		if err := e.recordSharing(f, on); err != nil {
			return err
		}
		if f.json {
			return json.NewEncoder(e.stdout).Encode(map[string]bool{"sharing": on})
		}
		if on {
			fmt.Fprintln(e.stdout, "sharing on: aggregated usage metrics go to the control plane (a running serve notices within a second); see 'codex-edge telemetry ledger'")
		} else {
			fmt.Fprintln(e.stdout, "sharing off: a running serve closes its control plane connection within a second and sends nothing")
		}
		return nil
	}
}

// enrollChange is an enrollment as the audit log records it: where to and
// as what, never the token.
func enrollChange(enr telemetry.Enrollment, cpURL string) audit.Change {
	return audit.Change{Action: "telemetry.enroll", Target: enr.EdgeID, Details: map[string]string{
		"control_plane": cpURL, "control_plane_org": enr.OrgID, "subject": enr.Subject}}
}

// recordSharing records the sharing switch in every org's audit log: it
// decides whether their usage leaves the network.
func (e *env) recordSharing(f *flags, on bool) error {
	return e.withStore(f, func(_ config.Config, st server.Store) error {
		return e.recordAdminAll(st, audit.Change{Action: "telemetry.sharing", Details: map[string]string{"on": fmt.Sprint(on)}})
	})
}

func (e *env) telemetryStatus(args []string) error {
	f := newFlags("telemetry status", true)
	if _, err := f.parse(args); err != nil {
		return err
	}
	var st telemetry.Status
	err := e.withTelemetry(f, func(ls linkState) (err error) {
		st, err = telemetry.StatusOf(e.ctx, ls.st)
		return err
	})
	if err != nil {
		return err
	}
	if f.json {
		return json.NewEncoder(e.stdout).Encode(st)
	}
	w := e.stdout
	state := "off"
	if st.Sharing {
		state = "on"
	}
	if st.SharingChangedAt != nil {
		state += " (since " + st.SharingChangedAt.Format(time.RFC3339) + ")"
	}
	fmt.Fprintf(w, "sharing:          %s\n", state)
	if !st.Enrolled {
		fmt.Fprintln(w, "enrolled:         no ('codex-edge telemetry enroll --url URL --token TOKEN')")
	} else {
		fmt.Fprintf(w, "edge id:          %s\n", st.EdgeID)
		fmt.Fprintf(w, "control plane:    %s (org %s)\n", st.ControlPlaneURL, st.OrgID)
		fmt.Fprintf(w, "nats:             %s subject %s\n", st.NATSURL, st.Subject)
	}
	last := "never"
	if st.LastSentAt != nil {
		last = fmt.Sprintf("seq %d at %s", st.LastSentSeq, st.LastSentAt.Format(time.RFC3339))
	}
	fmt.Fprintf(w, "last batch sent:  %s\n", last)
	fmt.Fprintf(w, "spool:            %d batches, %d bytes (bounds: %d batches, %d bytes)\n",
		st.Spool.Batches, st.Spool.Bytes, st.Spool.MaxBatches, st.Spool.MaxBytes)
	return nil
}

func (e *env) telemetryLedger(args []string) error {
	f := newFlags("telemetry ledger", true)
	if _, err := f.parse(args); err != nil {
		return err
	}
	var entries []telemetry.LedgerEntry
	err := e.withTelemetry(f, func(ls linkState) (err error) {
		entries, err = ls.st.Ledger(e.ctx)
		return err
	})
	if err != nil {
		return err
	}
	if f.json {
		enc := json.NewEncoder(e.stdout)
		for _, en := range entries {
			if err := enc.Encode(en); err != nil {
				return err
			}
		}
		return nil
	}
	if len(entries) == 0 {
		fmt.Fprintln(e.stdout, "no batch has left this edge")
		return nil
	}
	for _, en := range entries {
		if en.Kind == telemetry.KindEnrollment {
			fmt.Fprintf(e.stdout, "%s  enrollment exchange (secrets elided)  %d bytes  sha256 %s\n", en.Time.Format(time.RFC3339), en.Bytes, en.SHA256)
			fmt.Fprintf(e.stdout, "  %s\n", en.Batch)
			continue
		}
		var b wire.UsageBatch
		rows, instance := "?", ""
		if json.Unmarshal(en.Batch, &b) == nil {
			rows = fmt.Sprint(len(b.Rows))
			if b.Instance != "" {
				// The random process id that left with the batch.
				instance = "  instance " + b.Instance
			}
		}
		from := ""
		if en.Instance != "" {
			from = "  from " + en.Instance
		}
		fmt.Fprintf(e.stdout, "%s  seq %d  msg-id %s  to %s on %s  %d bytes  %s rows%s  sha256 %s%s\n",
			en.Time.Format(time.RFC3339), en.Seq, en.MsgID, en.NATSURL, en.Subject, en.Bytes, rows, instance, en.SHA256, from)
		fmt.Fprintf(e.stdout, "  %s\n", en.Batch)
	}
	return nil
}
