// Command codex-edge is the persīv codex gateway run inside the customer's
// network. `codex-edge serve` runs it; the other subcommands manage orgs,
// gateway keys, provider settings and memories in the same data directory
// or database that serve uses.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/persiv/codex/edge/config"
)

const usageText = `codex-edge: the persīv codex gateway

Usage:
  codex-edge serve [--config edge.yaml]
  codex-edge migrate
  codex-edge orgs create NAME [--kek awskms:<key-arn>|byok-ephemeral]
  codex-edge orgs kek set --org ORG awskms:<key-arn>|byok-ephemeral|default
  codex-edge orgs list [--json]
  codex-edge orgs delete --org ORG --yes
  codex-edge orgs deletions [--json]
  codex-edge keys create --org ORG --name NAME [--json]
  codex-edge keys list --org ORG [--json]
  codex-edge keys revoke ID_OR_KEY
  codex-edge providers set --org ORG openai|anthropic (--api-key-env VAR | --api-key-stdin) [--base-url URL [--allow-insecure-http]]
  codex-edge providers list --org ORG [--json]
  codex-edge limits set --org ORG [--key KEY] [--rpm N] [--tpm N]
  codex-edge limits list --org ORG [--json]
  codex-edge budgets set --org ORG [--key KEY] --usd AMOUNT --period day|month
  codex-edge budgets list --org ORG [--json]
  codex-edge crypto status [--org ORG] [--admin-addr HOST:PORT] [--json]
  codex-edge crypto rotate --org ORG
  codex-edge crypto rewrap
  codex-edge crypto shred --org ORG --yes [--schedule-key-deletion DAYS]
  codex-edge telemetry enroll --url URL --token TOKEN [--name NAME]
  codex-edge telemetry on|off|status|ledger [--json]
  codex-edge memory set --org ORG [--key KEY] --name NAME (--file PATH | --stdin)
  codex-edge memory list --org ORG [--json]
  codex-edge memory show --org ORG [--key KEY] NAME
  codex-edge memory rm --org ORG [--key KEY] NAME
  codex-edge audit level --org ORG [--key KEY] [none|hash|full]
  codex-edge audit list --org ORG [--since RFC3339] [--json]
  codex-edge audit show EVENT_ID [--json]
  codex-edge audit verify --org ORG [--json]
  codex-edge audit export --org ORG [--since RFC3339]

Every subcommand takes --config FILE (or CODEX_CONFIG) and reads CODEX_*
variables, so it acts on the same data directory or database as serve.
ORG is an org id or name; KEY a key id. A limit or budget of 0 removes it.

Postgres (CODEX_DATABASE_URL): run "codex-edge migrate" with the owner
role's URL (in CODEX_DATABASE_URL or CODEX_DATABASE_OWNER_URL); it grants
CODEX_DATABASE_APP_ROLE (default codex_app) the access serve needs. serve
connects as that role and refuses a superuser, BYPASSRLS or table-owning
role and an unmigrated schema. With CODEX_DATABASE_MIGRATE=true and
CODEX_DATABASE_OWNER_URL set, serve migrates at start-up first.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv))
}

// env is what a subcommand runs with; tests build one directly.
type env struct {
	ctx    context.Context
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	e := &env{ctx: ctx, stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, usageText)
		return 0
	}
	cmd, rest := args[0], args[1:]
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		switch cmd {
		case "orgs", "keys", "providers", "limits", "budgets", "crypto", "telemetry", "memory", "audit":
			cmd, rest = cmd+" "+rest[0], rest[1:]
		}
	}
	var err error
	switch cmd {
	case "serve":
		err = e.serve(rest)
	case "migrate":
		err = e.migrate(rest)
	case "orgs create":
		err = e.orgsCreate(rest)
	case "orgs list":
		err = e.orgsList(rest)
	case "orgs delete":
		err = e.orgsDelete(rest)
	case "orgs deletions":
		err = e.orgsDeletions(rest)
	case "orgs kek":
		if len(rest) == 0 || rest[0] != "set" {
			fmt.Fprintf(stderr, "codex-edge: unknown command %q\n\n%s", strings.Join(args, " "), usageText)
			return 2
		}
		cmd = "orgs kek set"
		err = e.orgsKEKSet(rest[1:])
	case "keys create":
		err = e.keysCreate(rest)
	case "keys list":
		err = e.keysList(rest)
	case "keys revoke":
		err = e.keysRevoke(rest)
	case "providers set":
		err = e.providersSet(rest)
	case "providers list":
		err = e.providersList(rest)
	case "limits set":
		err = e.limitsSet(rest)
	case "limits list":
		err = e.limitsList(rest)
	case "budgets set":
		err = e.budgetsSet(rest)
	case "budgets list":
		err = e.budgetsList(rest)
	case "crypto status":
		err = e.cryptoStatus(rest)
	case "crypto rotate":
		err = e.cryptoRotate(rest)
	case "crypto rewrap":
		err = e.cryptoRewrap(rest)
	case "crypto shred":
		err = e.cryptoShred(rest)
	case "telemetry enroll":
		err = e.telemetryEnroll(rest)
	case "telemetry on", "telemetry off":
		err = e.telemetrySet(cmd == "telemetry on")(rest)
	case "telemetry status":
		err = e.telemetryStatus(rest)
	case "telemetry ledger":
		err = e.telemetryLedger(rest)
	case "memory set":
		err = e.memorySet(rest)
	case "memory list":
		err = e.memoryList(rest)
	case "memory show":
		err = e.memoryShow(rest)
	case "memory rm":
		err = e.memoryRm(rest)
	case "audit level":
		err = e.auditLevel(rest)
	case "audit list":
		err = e.auditList(rest)
	case "audit show":
		err = e.auditShow(rest)
	case "audit verify":
		err = e.auditVerify(rest)
	case "audit export":
		err = e.auditExport(rest)
	default:
		fmt.Fprintf(stderr, "codex-edge: unknown command %q\n\n%s", strings.Join(args[:min(2, len(args))], " "), usageText)
		return 2
	}
	if err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "codex-edge %s: %v\n\n%s", cmd, err, usageText)
			return 2
		}
		fmt.Fprintf(stderr, "codex-edge %s: %v\n", cmd, err)
		return 1
	}
	return 0
}

type usageError struct{ error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// flags holds the flags every subcommand shares.
type flags struct {
	*flag.FlagSet
	config string
	json   bool
}

func newFlags(name string, withJSON bool) *flags {
	f := &flags{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError)}
	f.SetOutput(io.Discard)
	f.StringVar(&f.config, "config", "", "configuration file (YAML)")
	if withJSON {
		f.BoolVar(&f.json, "json", false, "print JSON, one object per line")
	}
	return f
}

// parse accepts flags before, between and after positional arguments.
func (f *flags) parse(args []string) ([]string, error) {
	var pos []string
	for {
		if err := f.Parse(args); err != nil {
			return nil, usageError{err}
		}
		args = f.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func (e *env) config(f *flags) (config.Config, error) {
	path := f.config
	if path == "" {
		path = e.getenv("CODEX_CONFIG")
	}
	return config.Load(path, e.getenv)
}

func (e *env) logger(cfg config.Config) *slog.Logger {
	var lvl slog.Level
	// config.Load has checked the level; an unknown one would stay at info.
	_ = lvl.UnmarshalText([]byte(cfg.LogLevel))
	return slog.New(slog.NewJSONHandler(e.stderr, &slog.HandlerOptions{Level: lvl}))
}
