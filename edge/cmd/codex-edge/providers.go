package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/persiv/codex/edge"
	"github.com/persiv/codex/edge/audit"
	"github.com/persiv/codex/edge/config"
	"github.com/persiv/codex/edge/keyring"
	"github.com/persiv/codex/edge/server"
)

func (e *env) providersSet(args []string) error {
	f := newFlags("providers set", false)
	org := f.String("org", "", "org id or name")
	keyEnv := f.String("api-key-env", "", "name of the environment variable holding the provider key (serve reads it)")
	keyStdin := f.Bool("api-key-stdin", false, "read the provider key from standard input")
	baseURL := f.String("base-url", "", "provider API root, e.g. https://api.openai.com (default: the provider's)")
	insecure := f.Bool("allow-insecure-http", false, "allow a plain http:// --base-url to a host other than loopback: the provider key and prompts cross the network unencrypted")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || !edge.Provider(pos[0]).Valid() {
		return usagef("give the provider: openai or anthropic")
	}
	if (*keyEnv == "") == !*keyStdin {
		return usagef("give exactly one of --api-key-env VAR and --api-key-stdin")
	}
	return e.withOrg(f, *org, func(cfg config.Config, st server.Store, o edge.Org) error {
		p := edge.Provider(pos[0])
		pc := edge.ProviderConfig{OrgID: o.ID, Provider: p, BaseURL: strings.TrimRight(*baseURL, "/"), APIKeyEnv: *keyEnv,
			AllowInsecureHTTP: *insecure, UpdatedAt: time.Now().UTC()}
		// Checked before reading a key from stdin, and again by the store
		// (without the deny list, which only the configuration knows) and
		// by serve when it loads the setting.
		if err := pc.Check(cfg.APIKeyEnvDenyList()); err != nil {
			return err
		}
		from := "$" + *keyEnv
		if *keyStdin {
			key, err := readSecret(e.stdin)
			if err != nil {
				return err
			}
			kr, err := e.keyring(cfg, st)
			if err != nil {
				return err
			}
			pc.SealedKey, err = kr.Seal(e.ctx, o.ID, keyring.PurposeCredential, edge.CredentialRecord(p), key)
			clear(key)
			if err != nil {
				return fmt.Errorf("seal the %s key: %w", p, err)
			}
			from = "stdin, stored encrypted"
		}
		if err := st.SetProvider(e.ctx, pc); err != nil {
			return err
		}
		if err := e.recordAdmin(st, providerChange(pc)); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%s set for %s (key from %s)\n", pc.Provider, o.Name, from)
		return nil
	})
}

func (e *env) providersList(args []string) error {
	f := newFlags("providers list", true)
	org := f.String("org", "", "org id or name")
	if _, err := f.parse(args); err != nil {
		return err
	}
	return e.withOrg(f, *org, func(_ config.Config, st server.Store, o edge.Org) error {
		pcs, err := st.Providers(e.ctx, o.ID)
		if err != nil {
			return err
		}
		if f.json {
			enc := json.NewEncoder(e.stdout)
			for _, p := range pcs {
				if err := enc.Encode(map[string]any{"provider": p.Provider, "base_url": p.BaseURL, "api_key_env": p.APIKeyEnv, "sealed": len(p.SealedKey) > 0,
					"allow_insecure_http": p.AllowInsecureHTTP, "updated_at": p.UpdatedAt}); err != nil {
					return err
				}
			}
			return nil
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PROVIDER\tBASE URL\tKEY FROM\tUPDATED")
		for _, p := range pcs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.Provider, p.BaseURL, keySource(p), p.UpdatedAt.Format(time.RFC3339))
		}
		return tw.Flush()
	})
}

// providerChange is a provider setting as the audit log records it: where
// the key comes from, never the key.
func providerChange(pc edge.ProviderConfig) audit.Change {
	return audit.Change{OrgID: pc.OrgID, Action: "providers.set", Target: string(pc.Provider), Details: map[string]string{
		"base_url": pc.BaseURL, "key_from": keySource(pc), "allow_insecure_http": fmt.Sprint(pc.AllowInsecureHTTP)}}
}

func keySource(p edge.ProviderConfig) string {
	if len(p.SealedKey) > 0 {
		return "sealed"
	}
	return "$" + p.APIKeyEnv
}

// maxSecret bounds a secret read from standard input.
const maxSecret = 64 << 10

// readSecret reads a secret from r, ignoring surrounding whitespace.
func readSecret(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxSecret+1))
	if err != nil {
		return nil, fmt.Errorf("read the key from standard input: %w", err)
	}
	if len(b) > maxSecret {
		return nil, errors.New("the key on standard input is longer than 64 KiB")
	}
	key := []byte(strings.TrimSpace(string(b)))
	clear(b)
	if len(key) == 0 {
		return nil, errors.New("no key on standard input (pipe it in: printenv OPENAI_API_KEY | codex-edge providers set …)")
	}
	return key, nil
}
