package deploytest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// composeEnv is what deploy/compose/setup.sh writes to .env: every
// variable the compose file requires, with placeholder values.
var composeEnv = []string{
	"POSTGRES_PASSWORD=p1", "POSTGRES_OWNER_PASSWORD=p2", "POSTGRES_APP_PASSWORD=p3", "REDIS_PASSWORD=p4",
}

func loadCompose(t *testing.T, env []string) (*types.Project, error) {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join(repoRoot, "deploy/compose"))
	if err != nil {
		t.Fatal(err)
	}
	opts, err := cli.NewProjectOptions([]string{filepath.Join(dir, "compose.yaml")},
		cli.WithName("codex"), cli.WithWorkingDirectory(dir), cli.WithEnv(env))
	if err != nil {
		t.Fatal(err)
	}
	return opts.LoadProject(t.Context())
}

// TestComposeSpec loads the compose file with the Compose Specification's
// own loader (the one docker compose uses): schema, interpolation and
// references are checked as docker compose would check them, and a
// missing secret stops it with setup.sh's hint.
func TestComposeSpec(t *testing.T) {
	p, err := loadCompose(t, composeEnv)
	if err != nil {
		t.Fatalf("deploy/compose/compose.yaml does not load: %v", err)
	}
	for _, want := range []string{"postgres", "redis", "nats", "controlplane", "edge"} {
		if _, ok := p.Services[want]; !ok {
			t.Errorf("no service %s (services: %v)", want, p.ServiceNames())
		}
	}
	for name, s := range p.Services {
		if s.Build == nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(s.Build.Context, s.Build.Dockerfile)); err != nil {
			t.Errorf("service %s builds from %s: %v", name, s.Build.Dockerfile, err)
		}
	}
	if got := p.Services["edge"].Environment["CODEX_DATABASE_URL"]; got == nil || !strings.Contains(*got, ":p3@") {
		t.Errorf("edge CODEX_DATABASE_URL %v: the app password was not interpolated", got)
	}
	if _, err := loadCompose(t, composeEnv[1:]); err == nil || !strings.Contains(err.Error(), "setup.sh") {
		t.Errorf("without POSTGRES_PASSWORD the file loaded (%v); want setup.sh's hint", err)
	}
}

// TestComposeUp starts the stack when a container engine runs here and
// checks that the edge answers. None runs on the machines CI uses, where
// the test says so and skips; TestComposeSpec still loads the file.
func TestComposeUp(t *testing.T) {
	if testing.Short() {
		t.Skip("starts containers; not in -short")
	}
	if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		t.Skipf("no container engine (docker info: %v: %s): compose stack not started", err, strings.TrimSpace(string(out)))
	}
	dir := filepath.Join(repoRoot, "deploy/compose")
	run := func(ctx context.Context, args ...string) {
		t.Helper()
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	run(ctx, "./setup.sh")
	t.Cleanup(func() {
		cmd := exec.Command("docker", "compose", "down", "-v")
		cmd.Dir = dir
		_ = cmd.Run()
	})
	run(ctx, "docker", "compose", "up", "-d", "--build", "--wait")
	run(ctx, "docker", "compose", "exec", "-T", "edge", "/usr/local/bin/codex-healthcheck")
}
