package deploytest

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// repoRoot is the repository root, seen from this package's directory.
const repoRoot = "../.."

func readFile(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, rel))
	if err != nil {
		t.Fatalf("read %s: %v", rel, err)
	}
	return b
}

// readFileNoT reads a repository file for a fixture; a missing file reads
// as empty, which the test using it reports.
func readFileNoT(rel string) []byte {
	b, _ := os.ReadFile(filepath.Join(repoRoot, rel))
	return b
}

var (
	pinnedImage = regexp.MustCompile(`^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?(@sha256:[0-9a-f]{64})?$`)
	urlArg      = regexp.MustCompile(`(?i)\b(https?|ftp)://`)
)

// lintDockerfile holds a Dockerfile to the image rules of issue 9: every
// base image pinned (a version tag or a digest, never latest or none), no
// ADD (COPY only: ADD fetches URLs and unpacks archives), the final stage on
// distroless/static or scratch, running as a numeric non-root user, with a
// /healthz HEALTHCHECK and an exec-form ENTRYPOINT, and every go build
// static (CGO_ENABLED=0) and trimmed (-trimpath, -ldflags='-s -w').
func lintDockerfile(d *Dockerfile) []string {
	var p []string
	stages := map[string]bool{}
	builds := 0
	for _, s := range d.Stages {
		img := s.Image
		switch {
		case stages[img] || img == "scratch":
		case !pinnedImage.MatchString(img):
			p = append(p, "line "+itoa(s.From.Line)+": base image "+img+" is not a plain image reference")
		case strings.HasSuffix(img, ":latest") || (!strings.Contains(lastSegment(img), ":") && !strings.Contains(img, "@sha256:")):
			p = append(p, "line "+itoa(s.From.Line)+": base image "+img+" is not pinned (use a version tag or @sha256 digest)")
		}
		if s.Name != "" {
			stages[s.Name] = true
		}
		for _, in := range s.Instructions {
			switch in.Cmd {
			case "ADD":
				p = append(p, "line "+itoa(in.Line)+": ADD (use COPY; never fetch URLs or unpack archives implicitly)")
				if urlArg.MatchString(in.Args) {
					p = append(p, "line "+itoa(in.Line)+": ADD of a URL")
				}
			case "RUN":
				if urlArg.MatchString(in.Args) && regexp.MustCompile(`\b(curl|wget)\b`).MatchString(in.Args) {
					p = append(p, "line "+itoa(in.Line)+": RUN downloads from a URL")
				}
				if regexp.MustCompile(`\bgo build\b`).MatchString(in.Args) {
					builds++
					for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-ldflags='-s -w'"} {
						if !strings.Contains(in.Args, want) {
							p = append(p, "line "+itoa(in.Line)+": go build without "+want)
						}
					}
				}
			}
		}
	}
	if builds == 0 {
		p = append(p, "no go build in any stage")
	}
	final := d.Final()
	if !strings.HasPrefix(final.Image, "gcr.io/distroless/static") && final.Image != "scratch" {
		p = append(p, "final stage "+final.Image+" is not distroless/static or scratch")
	}
	users := final.All("USER")
	switch {
	case len(users) == 0:
		p = append(p, "final stage has no USER: it would run as root")
	default:
		u, _, _ := strings.Cut(strings.TrimSpace(users[len(users)-1].Args)+" ", " ")
		uid, _, _ := strings.Cut(u, ":")
		if !regexp.MustCompile(`^[1-9][0-9]*$`).MatchString(uid) {
			p = append(p, "USER "+u+" is not a numeric non-root uid (Kubernetes runAsNonRoot needs a number)")
		}
	}
	hc := final.All("HEALTHCHECK")
	if len(hc) == 0 || !strings.Contains(hc[len(hc)-1].Args, "/healthz") || strings.Contains(hc[len(hc)-1].Args, "NONE") {
		p = append(p, "final stage has no HEALTHCHECK on /healthz")
	}
	ep := final.All("ENTRYPOINT")
	if len(ep) == 0 || !strings.HasPrefix(ep[len(ep)-1].Args, "[") {
		p = append(p, "final stage has no exec-form ENTRYPOINT")
	}
	for _, in := range final.All("RUN") {
		p = append(p, "line "+itoa(in.Line)+": RUN in the final stage (it has no shell)")
	}
	return p
}

func lastSegment(img string) string {
	img, _, _ = strings.Cut(img, "@")
	return img[strings.LastIndexByte(img, '/')+1:]
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestDockerfiles(t *testing.T) {
	for _, name := range []string{"edge", "controlplane"} {
		t.Run(name, func(t *testing.T) {
			rel := "deploy/docker/" + name + ".Dockerfile"
			d, err := ParseDockerfile(strings.NewReader(string(readFile(t, rel))))
			if err != nil {
				t.Fatalf("%s: %v", rel, err)
			}
			for _, p := range lintDockerfile(d) {
				t.Errorf("%s: %s", rel, p)
			}
			// The binary the image ships is built from this module.
			if !strings.Contains(dockerRuns(d), "./cmd/codex-"+name) {
				t.Errorf("%s: does not build ./cmd/codex-%s", rel, name)
			}
			// BuildKit reads <Dockerfile>.dockerignore: the context is the
			// repository root, so it must exist and exclude by default.
			ign := string(readFile(t, rel+".dockerignore"))
			if !regexp.MustCompile(`(?m)^\*\*$`).MatchString(ign) {
				t.Errorf("%s.dockerignore: does not start from excluding everything (**)", rel)
			}
		})
	}
}

func dockerRuns(d *Dockerfile) string {
	var b strings.Builder
	for _, s := range d.Stages {
		for _, in := range s.All("RUN") {
			b.WriteString(in.Args + "\n")
		}
	}
	return b.String()
}

// make build must build the binaries the way the images do.
func TestMakeBuildMatchesImages(t *testing.T) {
	mk := string(readFile(t, "Makefile"))
	line := regexp.MustCompile(`(?m)^\t.*go\)? build.*$`).FindString(mk)
	if line == "" {
		line = regexp.MustCompile(`(?m)^\t.*\$\(GO\) build.*$`).FindString(mk)
	}
	if line == "" {
		t.Fatal("Makefile: no go build line in the build target")
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-ldflags='-s -w'"} {
		if !strings.Contains(line, want) {
			t.Errorf("Makefile build line %q lacks %s (the images build with it)", line, want)
		}
	}
}

func TestLintDockerfileFindsProblems(t *testing.T) {
	good := `# syntax=docker/dockerfile:1
ARG GO_VERSION=1.26.8
FROM golang:${GO_VERSION}-bookworm AS build
RUN CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/x ./cmd/x
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/x /x
USER 65532:65532
HEALTHCHECK CMD ["/x", "health", "https://127.0.0.1:8443/healthz"]
ENTRYPOINT ["/x"]
`
	tests := []struct {
		name, from, to, want string
	}{
		{"good", "", "", ""},
		{"latest base", "golang:${GO_VERSION}-bookworm", "golang:latest", "not pinned"},
		{"untagged base", "golang:${GO_VERSION}-bookworm", "golang", "not pinned"},
		{"no user", "USER 65532:65532\n", "", "no USER"},
		{"root user", "USER 65532:65532", "USER root", "not a numeric non-root"},
		{"uid 0", "USER 65532:65532", "USER 0", "not a numeric non-root"},
		{"add url", "COPY --from=build", "ADD https://example.com/x.tgz /x\nCOPY --from=build", "ADD of a URL"},
		{"cgo", "CGO_ENABLED=0 go build", "go build", "without CGO_ENABLED=0"},
		{"no trimpath", "-trimpath ", "", "without -trimpath"},
		{"no healthcheck", `HEALTHCHECK CMD ["/x", "health", "https://127.0.0.1:8443/healthz"]`, "", "no HEALTHCHECK"},
		{"shell entrypoint", `ENTRYPOINT ["/x"]`, "ENTRYPOINT /x", "exec-form"},
		{"fat final image", "gcr.io/distroless/static-debian12:nonroot", "debian:bookworm", "not distroless"},
		{"curl", "RUN CGO_ENABLED=0", "RUN curl -fsSL https://example.com/x | sh\nRUN CGO_ENABLED=0", "downloads"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := good
			if tt.from != "" {
				if !strings.Contains(src, tt.from) {
					t.Fatalf("fixture lacks %q", tt.from)
				}
				src = strings.Replace(src, tt.from, tt.to, 1)
			}
			d, err := ParseDockerfile(strings.NewReader(src))
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Join(lintDockerfile(d), "\n")
			if tt.want == "" && got != "" {
				t.Fatalf("unexpected problems:\n%s", got)
			}
			if tt.want != "" && !strings.Contains(got, tt.want) {
				t.Fatalf("problems %q do not mention %q", got, tt.want)
			}
		})
	}
}

func TestParseDockerfile(t *testing.T) {
	src := "# c\nARG A=1.2\nARG B\nFROM --platform=$BUILDPLATFORM img:${A}-x AS b\nRUN a \\\n  # inside\n  b \\\n  c\nFROM b\nCOPY --from=b /x /y\n"
	d, err := ParseDockerfile(strings.NewReader(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Stages) != 2 || d.Stages[0].Image != "img:1.2-x" || d.Stages[0].Name != "b" || d.Stages[1].Image != "b" {
		t.Fatalf("stages = %+v", d.Stages)
	}
	run := d.Stages[0].All("RUN")
	if len(run) != 1 || strings.Join(strings.Fields(run[0].Args), " ") != "a b c" || run[0].Line != 5 {
		t.Fatalf("RUN = %+v", run)
	}
	for _, bad := range []string{"", "RUN x\n", "FROM\n", "FROM a\nRUN x \\", "FROM a\nRUN <<EOF\nx\nEOF\n"} {
		if _, err := ParseDockerfile(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseDockerfile(%q): no error", bad)
		}
	}
}

func FuzzParseDockerfile(f *testing.F) {
	f.Add("FROM a:1 AS b\nRUN x \\\n y\nUSER 1\n")
	f.Add("ARG X=${Y:-z}\nFROM $X\n")
	f.Add("FROM a\n# c \\\nRUN ${\n")
	f.Fuzz(func(t *testing.T, src string) {
		d, err := ParseDockerfile(strings.NewReader(src))
		if err != nil {
			return
		}
		if len(d.Stages) == 0 {
			t.Fatal("no error and no stage")
		}
		for _, s := range d.Stages {
			if s.Image == "" && s.From.Args == "" {
				t.Fatalf("stage without FROM args: %+v", s)
			}
			for _, in := range s.Instructions {
				if in.Cmd == "FROM" || in.Line < s.From.Line {
					t.Fatalf("instruction %+v in stage from line %d", in, s.From.Line)
				}
			}
		}
		_ = lintDockerfile(d)
	})
}

// The images' HEALTHCHECK program, built as the Dockerfiles build it and
// run against a TLS server answering 200, then 503, then nothing.
func TestHealthcheckProgram(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "codex-healthcheck")
	src, err := filepath.Abs(filepath.Join(repoRoot, "deploy/docker/healthcheck.go"))
	if err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, src)
	build.Dir = t.TempDir()
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build healthcheck.go: %v\n%s", err, out)
	}
	var status atomic.Int32
	status.Store(http.StatusOK)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(int(status.Load()))
	}))
	defer srv.Close()
	run := func(url string) int {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := exec.CommandContext(ctx, bin, url).Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatalf("run healthcheck: %v", err)
		}
		return 0
	}
	if got := run(srv.URL + "/healthz"); got != 0 {
		t.Errorf("healthy server: exit %d, want 0", got)
	}
	if got := run(srv.URL + "/missing"); got != 1 {
		t.Errorf("404: exit %d, want 1", got)
	}
	status.Store(http.StatusServiceUnavailable)
	if got := run(srv.URL + "/healthz"); got != 1 {
		t.Errorf("503: exit %d, want 1", got)
	}
	if got := run("not a url"); got != 1 {
		t.Errorf("bad URL: exit %d, want 1", got)
	}
	srv.Close()
	if got := run(srv.URL + "/healthz"); got != 1 {
		t.Errorf("closed server: exit %d, want 1", got)
	}
}
