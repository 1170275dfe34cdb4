package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"text/tabwriter"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/audit"
	"github.com/persiv/codex/edge/config"
	"github.com/persiv/codex/edge/server"
)

func (e *env) limitsSet(args []string) error {
	f := newFlags("limits set", false)
	org := f.String("org", "", "org id or name")
	key := f.String("key", "", "key id: limit this key alone (default: the org, all its keys together)")
	rpm := f.Int64("rpm", 0, "requests per minute; 0 removes the limit")
	tpm := f.Int64("tpm", 0, "tokens (input + output) per minute; 0 removes the limit")
	if pos, err := f.parse(args); err != nil {
		return err
	} else if len(pos) > 0 {
		return usagef("unexpected argument %q", pos[0])
	}
	given := map[string]bool{}
	f.Visit(func(fl *flag.Flag) { given[fl.Name] = true })
	if !given["rpm"] && !given["tpm"] {
		return usagef("give --rpm N, --tpm N or both (0 removes a limit)")
	}
	return e.withOrg(f, *org, func(_ config.Config, st server.Store, o edge.Org) error {
		ls, err := st.Limits(e.ctx, o.ID)
		if err != nil {
			return err
		}
		// A limit not given stays as it is.
		l := edge.LimitFor(ls, o.ID, *key)
		if given["rpm"] {
			l.RPM = *rpm
		}
		if given["tpm"] {
			l.TPM = *tpm
		}
		l.UpdatedAt = timeNow()
		if err := st.SetLimit(e.ctx, l); err != nil {
			return err
		}
		if err := e.recordAdmin(st, audit.LimitSet(l)); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "limit of %s: %s\n", subject(o, *key), describeLimit(l))
		return nil
	})
}

func (e *env) limitsList(args []string) error {
	f := newFlags("limits list", true)
	org := f.String("org", "", "org id or name")
	if _, err := f.parse(args); err != nil {
		return err
	}
	return e.withOrg(f, *org, func(_ config.Config, st server.Store, o edge.Org) error {
		ls, err := st.Limits(e.ctx, o.ID)
		if err != nil {
			return err
		}
		if f.json {
			enc := json.NewEncoder(e.stdout)
			for _, l := range ls {
				if err := enc.Encode(l.JSON()); err != nil {
					return err
				}
			}
			return nil
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KEY\tRPM\tTPM")
		for _, l := range ls {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", orDash(l.KeyID, "(org)"), orDash(count(l.RPM), "-"), orDash(count(l.TPM), "-"))
		}
		return tw.Flush()
	})
}

// subject names what a setting applies to.
func subject(o edge.Org, keyID string) string {
	if keyID == "" {
		return "org " + o.Name
	}
	return "key " + keyID + " of " + o.Name
}

func describeLimit(l edge.Limit) string {
	if l.None() {
		return "none"
	}
	return fmt.Sprintf("rpm %s, tpm %s", orDash(count(l.RPM), "none"), orDash(count(l.TPM), "none"))
}

func count(n int64) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprint(n)
}

func orDash(s, alt string) string {
	if s == "" {
		return alt
	}
	return s
}
