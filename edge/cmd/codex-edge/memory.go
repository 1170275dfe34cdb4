package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/audit"
	"github.com/persiv/codex/edge/config"
	"github.com/persiv/codex/edge/memory"
	"github.com/persiv/codex/edge/server"
)

// memoryService opens the keyring (memories are sealed by their org's data
// key) and returns the memory service over st.
func (e *env) memoryService(cfg config.Config, st server.Store) (memory.Service, error) {
	kr, err := e.keyring(cfg, st)
	if err != nil {
		return memory.Service{}, err
	}
	return memory.Service{Store: st, Keys: kr}, nil
}

// owner names whose a memory is, for messages.
func owner(o edge.Org, keyID string) string {
	if keyID == "" {
		return "org " + o.Name
	}
	return "key " + keyID + " of org " + o.Name
}

func (e *env) memorySet(args []string) error {
	f := newFlags("memory set", false)
	org := f.String("org", "", "org id or name")
	key := f.String("key", "", "key id: the memory is this key's (default: the org's, for all its keys)")
	name := f.String("name", "", "the memory's name: letters, digits, '.', '_' and '-'")
	file := f.String("file", "", "read the text from this file")
	stdin := f.Bool("stdin", false, "read the text from standard input")
	if pos, err := f.parse(args); err != nil {
		return err
	} else if len(pos) > 0 {
		return usagef("unexpected argument %q", pos[0])
	}
	if *name == "" {
		return usagef("--name is required")
	}
	if (*file == "") == !*stdin {
		return usagef("give exactly one of --file PATH and --stdin")
	}
	if err := edge.CheckMemoryName(*name); err != nil {
		return err
	}
	text, err := e.readMemoryText(*file)
	if err != nil {
		return err
	}
	defer clear(text)
	return e.withOrg(f, *org, func(cfg config.Config, st server.Store, o edge.Org) error {
		svc, err := e.memoryService(cfg, st)
		if err != nil {
			return err
		}
		info, err := svc.Set(e.ctx, o.ID, *key, *name, text)
		if err != nil {
			return err
		}
		if err := e.recordAdmin(st, audit.MemorySet(o.ID, *key, info.Name, info.Version, info.Bytes)); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%s@%d set for %s (%d bytes, about %d tokens)\n", info.Name, info.Version, owner(o, *key), info.Bytes, info.Tokens)
		return nil
	})
}

// readMemoryText reads a memory's text from path, or from standard input
// when path is empty, refusing more than edge.MaxMemoryBytes.
func (e *env) readMemoryText(path string) ([]byte, error) {
	r := e.stdin
	if path != "" {
		fh, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("read the memory: %w", err)
		}
		defer func() { _ = fh.Close() }() // read only
		r = fh
	}
	text, err := io.ReadAll(io.LimitReader(r, edge.MaxMemoryBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read the memory: %w", err)
	}
	if err := memory.CheckText(text); err != nil {
		clear(text)
		return nil, err
	}
	return text, nil
}

func (e *env) memoryList(args []string) error {
	f := newFlags("memory list", true)
	org := f.String("org", "", "org id or name")
	if pos, err := f.parse(args); err != nil {
		return err
	} else if len(pos) > 0 {
		return usagef("unexpected argument %q", pos[0])
	}
	return e.withOrg(f, *org, func(_ config.Config, st server.Store, o edge.Org) error {
		// Listing opens nothing: it shows no text, so needs no keyring.
		infos, err := memory.Service{Store: st}.List(e.ctx, o.ID)
		if err != nil {
			return err
		}
		if f.json {
			enc := json.NewEncoder(e.stdout)
			for _, m := range infos {
				if err := enc.Encode(m); err != nil {
					return err
				}
			}
			return nil
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tKEY\tVERSION\tBYTES\tTOKENS (EST.)")
		for _, m := range infos {
			k := m.KeyID
			if k == "" {
				k = "(org)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\n", m.Name, k, m.Version, m.Bytes, m.Tokens)
		}
		return tw.Flush()
	})
}

// memoryRef parses the arguments shared by show and rm: --org, --key and
// the memory's name.
func memoryRef(cmd string, args []string) (f *flags, org, key *string, name string, err error) {
	f = newFlags(cmd, false)
	org = f.String("org", "", "org id or name")
	key = f.String("key", "", "key id, for a key's memory (default: the org's)")
	pos, err := f.parse(args)
	if err != nil {
		return nil, nil, nil, "", err
	}
	if len(pos) != 1 {
		return nil, nil, nil, "", usagef("give the memory's name")
	}
	return f, org, key, pos[0], nil
}

func (e *env) memoryShow(args []string) error {
	f, org, key, name, err := memoryRef("memory show", args)
	if err != nil {
		return err
	}
	return e.withOrg(f, *org, func(cfg config.Config, st server.Store, o edge.Org) error {
		svc, err := e.memoryService(cfg, st)
		if err != nil {
			return err
		}
		text, _, err := svc.Show(e.ctx, o.ID, *key, name)
		if errors.Is(err, edge.ErrNotFound) {
			return fmt.Errorf("no memory %q for %s (list them with 'codex-edge memory list --org %s')", name, owner(o, *key), o.Name)
		}
		if err != nil {
			return err
		}
		defer clear(text)
		_, err = e.stdout.Write(text)
		return err
	})
}

func (e *env) memoryRm(args []string) error {
	f, org, key, name, err := memoryRef("memory rm", args)
	if err != nil {
		return err
	}
	return e.withOrg(f, *org, func(_ config.Config, st server.Store, o edge.Org) error {
		err := memory.Service{Store: st}.Remove(e.ctx, o.ID, *key, name)
		if errors.Is(err, edge.ErrNotFound) {
			return fmt.Errorf("no memory %q for %s", name, owner(o, *key))
		}
		if err != nil {
			return err
		}
		if err := e.recordAdmin(st, audit.MemoryRemoved(o.ID, *key, name)); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "removed %s from %s\n", name, owner(o, *key))
		return nil
	})
}
