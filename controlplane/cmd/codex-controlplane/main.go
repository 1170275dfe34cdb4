// Command codex-controlplane is the multi-tenant SaaS side of persīv
// codex: it enrolls edges, receives their aggregated usage over NATS
// JetStream and stores it.
//
//	codex-controlplane serve [--config FILE]
//	codex-controlplane orgs create NAME
//	codex-controlplane users create --org ORG --email EMAIL --role owner|admin|viewer   # password on stdin
//	codex-controlplane enroll-token create --org ORG [--ttl 24h]
//	codex-controlplane nats-config
//	codex-controlplane migrate
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.LookupEnv)
	stop()
	os.Exit(code)
}
