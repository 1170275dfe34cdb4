package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/apikey"
	"github.com/persiv/codex/edge/audit"
	"github.com/persiv/codex/edge/config"
	"github.com/persiv/codex/edge/server"
)

func (e *env) orgsCreate(args []string) error {
	f := newFlags("orgs create", false)
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || strings.TrimSpace(pos[0]) == "" {
		return usagef("give the org's name")
	}
	return e.withStore(f, func(_ config.Config, st server.Store) error {
		o := edge.Org{ID: apikey.NewID("org_"), Name: strings.TrimSpace(pos[0]), CreatedAt: time.Now().UTC()}
		if err := st.CreateOrg(e.ctx, o); err != nil {
			if errors.Is(err, edge.ErrConflict) {
				return fmt.Errorf("an org named %q exists already", o.Name)
			}
			return err
		}
		if err := e.recordAdmin(st, audit.Change{OrgID: o.ID, Action: "orgs.create", Target: o.ID, Details: map[string]string{"name": o.Name}}); err != nil {
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
