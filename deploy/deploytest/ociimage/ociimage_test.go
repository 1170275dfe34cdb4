package ociimage

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/persiv/codex/deploy/deploytest"
)

const root = "../../.."

// TestImages builds both images as make images does, reads each tarball
// back, checks it against its Dockerfile, then runs the image's own
// binaries from its extracted filesystem: the server answers /healthz and
// the image's HEALTHCHECK program says so.
func TestImages(t *testing.T) {
	if testing.Short() {
		t.Skip("builds both images (about a minute); not in -short")
	}
	out := t.TempDir()
	tars, err := BuildAll(t.Context(), root, out, "test", io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for _, im := range Images {
		t.Run(im.Name, func(t *testing.T) {
			img, err := tarball.ImageFromPath(tars[im.Name], nil)
			if err != nil {
				t.Fatalf("read %s back: %v", tars[im.Name], err)
			}
			m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(tars[im.Name]) })
			if err != nil || len(m) != 1 || !slices.Equal(m[0].RepoTags, []string{im.Name + ":test"}) {
				t.Fatalf("manifest %+v (%v), want one image tagged %s:test", m, err, im.Name)
			}
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			checkConfig(t, im.Dockerfile, cf)
			dir := extract(t, img)
			bin := filepath.Join(dir, "usr/local/bin")
			env := runEnv(t, cf.Config.Env, dir)
			addr := serve(t, filepath.Join(bin, im.Name), cf.Config.Cmd, env, im.Name)
			health := exec.Command(filepath.Join(bin, "codex-healthcheck"), "http://"+addr+"/healthz")
			if b, err := health.CombinedOutput(); err != nil {
				t.Errorf("the image's healthcheck against a healthy %s: %v\n%s", im.Name, err, b)
			}
			dead := exec.Command(filepath.Join(bin, "codex-healthcheck"), "http://"+freeAddr(t)+"/healthz")
			if err := dead.Run(); err == nil {
				t.Errorf("the image's healthcheck passed against a closed port")
			}
		})
	}
}

// checkConfig holds the built image to its Dockerfile's final stage.
func checkConfig(t *testing.T, dockerfile string, cf *v1.ConfigFile) {
	t.Helper()
	f, err := os.Open(filepath.Join(root, dockerfile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d, err := deploytest.ParseDockerfile(f)
	if err != nil {
		t.Fatal(err)
	}
	final := d.Final()
	c := cf.Config
	if cf.OS != "linux" || cf.Architecture == "" {
		t.Errorf("platform %s/%s", cf.OS, cf.Architecture)
	}
	if got := final.Last("USER").Args; c.User != got || c.User == "" || strings.HasPrefix(c.User, "0") {
		t.Errorf("user %q, Dockerfile USER %q: want the same, not root", c.User, got)
	}
	for _, in := range []struct {
		cmd  string
		have []string
	}{{"ENTRYPOINT", c.Entrypoint}, {"CMD", c.Cmd}} {
		if want := final.Last(in.cmd).Args; fmt.Sprintf("%q", in.have) != strings.ReplaceAll(strings.ReplaceAll(want, ", ", " "), ",", " ") {
			t.Errorf("%s %q, Dockerfile %s", in.cmd, in.have, want)
		}
	}
	for _, kv := range strings.Fields(strings.ReplaceAll(final.Last("ENV").Args, `\`, "")) {
		if !slices.Contains(c.Env, kv) {
			t.Errorf("env %q lacks the Dockerfile's %s", c.Env, kv)
		}
	}
	for _, p := range strings.Fields(final.Last("EXPOSE").Args) {
		if _, ok := c.ExposedPorts[p+"/tcp"]; !ok {
			t.Errorf("exposed ports %v lack %s", c.ExposedPorts, p)
		}
	}
	if _, ok := c.Volumes["/var/lib/codex"]; !ok || len(c.Volumes) != 1 {
		t.Errorf("volumes %v, want /var/lib/codex", c.Volumes)
	}
	if h := c.Healthcheck; h == nil || len(h.Test) != 3 || h.Test[1] != "/usr/local/bin/codex-healthcheck" || h.Interval != 15*time.Second || h.Retries != 3 {
		t.Errorf("healthcheck %+v, want the Dockerfile's", h)
	}
	if c.Labels["org.opencontainers.image.version"] != "test" {
		t.Errorf("labels %v: the VERSION build argument did not reach the version label", c.Labels)
	}
}

// extract writes the image's filesystem to a directory, checking on the
// way that the data directory belongs to the image's user and that the
// binaries are there and executable.
func extract(t *testing.T, img v1.Image) string {
	t.Helper()
	dir := t.TempDir()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	seen := map[string]*tar.Header{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Clean("/" + h.Name)
		seen[name] = h
		p := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode)&0o777)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(f, tr); err != nil { //nolint:gosec // G110: our own image, read in a test
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
		default:
			t.Errorf("%s: unexpected entry type %c", name, h.Typeflag)
		}
	}
	for _, want := range []string{"/etc/passwd", "/etc/group", "/etc/ssl/certs/ca-certificates.crt", "/tmp", "/var/lib/codex", "/usr/local/bin/codex-healthcheck"} {
		if seen[want] == nil {
			t.Errorf("the image has no %s", want)
		}
	}
	if h := seen["/var/lib/codex"]; h != nil && (h.Uid != 65532 || h.Gid != 65532) {
		t.Errorf("/var/lib/codex owned by %d:%d, want the image's user 65532:65532", h.Uid, h.Gid)
	}
	if h := seen["/tmp"]; h != nil && h.Mode&0o1777 != 0o1777 {
		t.Errorf("/tmp mode %o, want 1777", h.Mode)
	}
	return dir
}

// runEnv is the image's environment for a process on this machine: its
// data directory moved into the extracted tree and its listeners onto
// free loopback ports (a container has its own network namespace; a test
// process does not).
func runEnv(t *testing.T, env []string, dir string) []string {
	t.Helper()
	var out []string
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		switch {
		case k == "CODEX_DATA_DIR":
			v = filepath.Join(dir, v)
		case strings.HasSuffix(k, "_LISTEN"):
			v = freeAddr(t)
		}
		out = append(out, k+"="+v)
	}
	return append(out, "CODEX_NATS_LISTEN="+freeAddr(t), "HOME="+dir)
}

// serve starts the image's entrypoint with its CMD and returns the address
// of its main listener once /healthz answers 200.
func serve(t *testing.T, bin string, args, env []string, name string) string {
	t.Helper()
	listen := "CODEX_LISTEN="
	if name == "codex-controlplane" {
		listen = "CODEX_CONTROLPLANE_LISTEN="
	}
	var addr string
	for _, kv := range env {
		if strings.HasPrefix(kv, listen) {
			addr = strings.TrimPrefix(kv, listen)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	var log strings.Builder
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s from the image: %v", bin, err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return addr
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s from the image did not answer /healthz on %s within 60s (last: %v)\n%s", name, addr, err, log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestReproducible: the same binaries give the same image digest, so a
// digest names what was built, not when.
func TestReproducible(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "codex-edge")
	if err := os.WriteFile(bin, []byte("#!/bin/true\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	spec := Spec{Config: v1.Config{User: "65532:65532"}, Files: []File{{Src: "/out/codex-edge", Dest: "/usr/local/bin/codex-edge"}, {Src: "/out/data", Dest: "/var/lib/codex", Dir: true, UID: 65532, GID: 65532}}}
	digest := func() v1.Hash {
		img, err := Build(spec, map[string]string{"/out/codex-edge": bin}, "amd64")
		if err != nil {
			t.Fatal(err)
		}
		h, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	a := digest()
	time.Sleep(1100 * time.Millisecond) // a build that stamped the time would differ now
	if b := digest(); a != b {
		t.Errorf("two builds of the same files: digests %s and %s", a, b)
	}
}

func TestFromDockerfileRefuses(t *testing.T) {
	base := "FROM " + BaseImage + "\n"
	tests := []struct{ name, file, want string }{
		{"other base", "FROM alpine:3.20\nUSER 1:1\n", "reproduces only"},
		{"unknown instruction", base + "WORKDIR /x\n", "WORKDIR is not supported"},
		{"shell-form entrypoint", base + "ENTRYPOINT /usr/local/bin/codex-edge serve\n", "ENTRYPOINT"},
		{"copy from the context", base + "COPY codex-edge /usr/local/bin/\n", "COPY --from=build"},
		{"shell-form healthcheck", base + "HEALTHCHECK CMD curl -f http://x/\n", "exec form"},
		{"unterminated label", base + `LABEL a="b` + "\n", "unterminated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := deploytest.ParseDockerfile(strings.NewReader(tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := FromDockerfile(d, nil); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("FromDockerfile: %v, want an error naming %q", err, tt.want)
			}
		})
	}
	d, err := deploytest.ParseDockerfile(strings.NewReader(base + "ARG VERSION=dev\nLABEL v=\"${VERSION}\" t=\"a b\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := FromDockerfile(d, map[string]string{"NOPE": "1"}); err == nil {
		t.Error("a build argument the Dockerfile does not declare was accepted")
	}
	s, err := FromDockerfile(d, map[string]string{"VERSION": "1.2.3"})
	if err != nil || s.Config.Labels["v"] != "1.2.3" || s.Config.Labels["t"] != "a b" {
		t.Errorf("labels %v (%v), want v=1.2.3 t=a b", s.Config.Labels, err)
	}
}
