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

func (e *env) keysCreate(args []string) error {
	f := newFlags("keys create", true)
	org := f.String("org", "", "org id or name")
	name := f.String("name", "", "a name for the key, e.g. its owner")
	if pos, err := f.parse(args); err != nil {
		return err
	} else if len(pos) > 0 {
		return usagef("unexpected argument %q", pos[0])
	}
	if strings.TrimSpace(*name) == "" {
		return usagef("--name is required")
	}
	return e.withOrg(f, *org, func(_ config.Config, st server.Store, o edge.Org) error {
		secret, err := apikey.Generate()
		if err != nil {
			return err
		}
		k := edge.APIKey{
			ID: apikey.NewID("key_"), OrgID: o.ID, Name: strings.TrimSpace(*name),
			Prefix: apikey.DisplayPrefix(secret), Hash: apikey.Hash(secret),
			State: edge.KeyActive, CreatedAt: time.Now().UTC(),
		}
		if err := st.CreateKey(e.ctx, k); err != nil {
			return err
		}
		if err := e.recordAdmin(st, audit.Change{OrgID: o.ID, Action: "keys.create", Target: k.ID, Details: map[string]string{"name": k.Name, "prefix": k.Prefix}}); err != nil {
			return err
		}
		// The one place the secret is ever shown.
		if f.json {
			return json.NewEncoder(e.stdout).Encode(map[string]string{"id": k.ID, "key": secret.Reveal(), "prefix": k.Prefix})
		}
		fmt.Fprintln(e.stdout, secret.Reveal())
		return nil
	})
}

func (e *env) keysList(args []string) error {
	f := newFlags("keys list", true)
	org := f.String("org", "", "org id or name")
	if _, err := f.parse(args); err != nil {
		return err
	}
	return e.withOrg(f, *org, func(_ config.Config, st server.Store, o edge.Org) error {
		keys, err := st.Keys(e.ctx, o.ID)
		if err != nil {
			return err
		}
		if f.json {
			enc := json.NewEncoder(e.stdout)
			for _, k := range keys {
				m := map[string]any{"id": k.ID, "org_id": k.OrgID, "name": k.Name, "prefix": k.Prefix, "state": k.State, "created_at": k.CreatedAt}
				if !k.RevokedAt.IsZero() {
					m["revoked_at"] = k.RevokedAt
				}
				if err := enc.Encode(m); err != nil {
					return err
				}
			}
			return nil
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tPREFIX\tSTATE\tCREATED")
		for _, k := range keys {
			fmt.Fprintf(tw, "%s\t%s\t%s…\t%s\t%s\n", k.ID, k.Name, k.Prefix, k.State, k.CreatedAt.Format(time.RFC3339))
		}
		return tw.Flush()
	})
}

func (e *env) keysRevoke(args []string) error {
	f := newFlags("keys revoke", false)
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("give the key's id or the key itself")
	}
	return e.withStore(f, func(_ config.Config, st server.Store) error {
		var k edge.APIKey
		var err error
		if secret, perr := apikey.Parse(pos[0]); perr == nil {
			k, err = st.KeyByHash(e.ctx, apikey.Hash(secret))
		} else {
			k, err = st.KeyByID(e.ctx, pos[0])
		}
		if errors.Is(err, edge.ErrNotFound) {
			return errors.New("no such key (list keys with 'codex-edge keys list --org ORG')")
		}
		if err != nil {
			return err
		}
		if err := st.RevokeKey(e.ctx, k.OrgID, k.ID, time.Now().UTC()); err != nil {
			return err
		}
		if err := e.recordAdmin(st, audit.Change{OrgID: k.OrgID, Action: "keys.revoke", Target: k.ID}); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "revoked %s\n", k.ID)
		return nil
	})
}
