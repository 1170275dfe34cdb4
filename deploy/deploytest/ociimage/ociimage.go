// Package ociimage builds the codex container images without a container
// engine: it reads the final stage of each Dockerfile in deploy/docker (the
// one source of what an image holds and how it runs), builds the binaries
// the way `make build` does, and writes an image tarball that `docker load`
// and `podman load` accept.
//
// The Dockerfiles start from gcr.io/distroless/static-debian12:nonroot,
// which this package cannot pull (no registry is reachable where it runs).
// In its place it lays down what the binaries use of that base: the
// machine's CA bundle, /etc/passwd and /etc/group naming root, nobody and
// nonroot (65532), /tmp and nonroot's home. The binaries are static, so
// nothing else of the base is used.
package ociimage

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/persiv/codex/deploy/deploytest"
)

// BaseImage is the base every Dockerfile must name: the one this package
// reproduces.
const BaseImage = "gcr.io/distroless/static-debian12:nonroot"

// CABundle is where the build machine's CA certificates are read from
// (Debian's ca-certificates, which distroless ships too).
const CABundle = "/etc/ssl/certs/ca-certificates.crt"

// baseEnv is the distroless base's own environment, which the image
// inherits before the Dockerfile's ENV.
var baseEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"SSL_CERT_FILE=" + CABundle,
}

// epoch stamps every file and the image: the same inputs give the same
// image digest.
var epoch = time.Unix(0, 0).UTC()

// Spec is what the Dockerfile's final stage makes of the image: its run
// configuration and the files it copies in.
type Spec struct {
	Config v1.Config
	Files  []File
}

// File is one COPY of the final stage: Src names the build stage's path
// (/out/codex-edge); a Dir is created empty.
type File struct {
	Src, Dest string
	UID, GID  int
	Dir       bool
}

// FromDockerfile reads the final stage of d. args override ARG defaults
// (VERSION). An instruction it does not know is an error, so that a
// Dockerfile change this builder would ignore fails loudly instead.
func FromDockerfile(d *deploytest.Dockerfile, buildArgs map[string]string) (Spec, error) {
	if len(d.Stages) == 0 {
		return Spec{}, fmt.Errorf("no FROM")
	}
	st := d.Stages[len(d.Stages)-1]
	if st.Image != BaseImage {
		return Spec{}, fmt.Errorf("line %d: final stage FROM %s; this builder reproduces only %s", st.From.Line, st.Image, BaseImage)
	}
	vars := map[string]string{}
	var s Spec
	s.Config.Labels = map[string]string{}
	s.Config.Env = append(s.Config.Env, baseEnv...)
	for _, in := range st.Instructions {
		args := expand(in.Args, vars)
		var err error
		switch in.Cmd {
		case "ARG":
			k, v, _ := strings.Cut(args, "=")
			k = strings.TrimSpace(k)
			v = unquote(strings.TrimSpace(v))
			if o, ok := buildArgs[k]; ok {
				v = o
			}
			vars[k] = v
		case "LABEL":
			err = pairs(args, func(k, v string) { s.Config.Labels[k] = v })
		case "ENV":
			err = pairs(args, func(k, v string) { s.Config.Env = append(s.Config.Env, k+"="+v) })
		case "USER":
			s.Config.User = args
		case "VOLUME":
			var vs []string
			if err = json.Unmarshal([]byte(args), &vs); err == nil {
				s.Config.Volumes = set(vs)
			}
		case "EXPOSE":
			var ps []string
			for _, p := range strings.Fields(args) {
				if !strings.Contains(p, "/") {
					p += "/tcp"
				}
				ps = append(ps, p)
			}
			s.Config.ExposedPorts = set(ps)
		case "ENTRYPOINT":
			err = json.Unmarshal([]byte(args), &s.Config.Entrypoint)
		case "CMD":
			err = json.Unmarshal([]byte(args), &s.Config.Cmd)
		case "HEALTHCHECK":
			s.Config.Healthcheck, err = healthcheck(args)
		case "COPY":
			var f File
			if f, err = copyFile(args); err == nil {
				s.Files = append(s.Files, f)
			}
		default:
			err = fmt.Errorf("%s is not supported in the final stage", in.Cmd)
		}
		if err != nil {
			return Spec{}, fmt.Errorf("line %d: %s: %w", in.Line, in.Cmd, err)
		}
	}
	for k, v := range buildArgs {
		if _, ok := vars[k]; !ok {
			return Spec{}, fmt.Errorf("build arg %s=%s: the final stage declares no ARG %s", k, v, k)
		}
	}
	return s, nil
}

var varRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)`)

func expand(s string, vars map[string]string) string {
	return varRef.ReplaceAllStringFunc(s, func(m string) string {
		k := strings.Trim(m, "${}")
		if v, ok := vars[k]; ok {
			return v
		}
		return m
	})
}

func unquote(s string) string {
	if u, err := strconv.Unquote(s); err == nil && strings.HasPrefix(s, `"`) {
		return u
	}
	return s
}

// pairs splits `k="v" k2=v2` (as LABEL and ENV write them) into pairs.
func pairs(s string, f func(k, v string)) error {
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimSpace(s) {
		k, rest, ok := strings.Cut(s, "=")
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			return fmt.Errorf("%q is not key=value", s)
		}
		var v string
		if strings.HasPrefix(rest, `"`) {
			end := 1
			for ; end < len(rest); end++ {
				if rest[end] == '\\' {
					end++
				} else if rest[end] == '"' {
					break
				}
			}
			if end >= len(rest) {
				return fmt.Errorf("unterminated quote in %q", s)
			}
			u, err := strconv.Unquote(rest[:end+1])
			if err != nil {
				return fmt.Errorf("value of %s: %w", k, err)
			}
			v, s = u, rest[end+1:]
		} else {
			v, s, _ = strings.Cut(rest, " ")
		}
		f(k, v)
	}
	return nil
}

func set(vs []string) map[string]struct{} {
	m := make(map[string]struct{}, len(vs))
	for _, v := range vs {
		m[v] = struct{}{}
	}
	return m
}

func healthcheck(args string) (*v1.HealthConfig, error) {
	h := &v1.HealthConfig{}
	f := strings.Fields(args)
	i := 0
	for ; i < len(f) && strings.HasPrefix(f[i], "--"); i++ {
		k, v, _ := strings.Cut(strings.TrimPrefix(f[i], "--"), "=")
		var err error
		switch k {
		case "interval":
			h.Interval, err = time.ParseDuration(v)
		case "timeout":
			h.Timeout, err = time.ParseDuration(v)
		case "start-period":
			h.StartPeriod, err = time.ParseDuration(v)
		case "retries":
			h.Retries, err = strconv.Atoi(v)
		default:
			err = fmt.Errorf("unknown option --%s", k)
		}
		if err != nil {
			return nil, err
		}
	}
	if i >= len(f) || f[i] != "CMD" {
		return nil, fmt.Errorf("want CMD [exec form] after the options")
	}
	var cmd []string
	if err := json.Unmarshal([]byte(strings.Join(f[i+1:], " ")), &cmd); err != nil {
		return nil, fmt.Errorf("CMD must be in exec form: %w", err)
	}
	h.Test = append([]string{"CMD"}, cmd...)
	return h, nil
}

func copyFile(args string) (File, error) {
	f := strings.Fields(args)
	file := File{}
	fromBuild := false
	var rest []string
	for _, a := range f {
		switch {
		case a == "--from=build":
			fromBuild = true
		case strings.HasPrefix(a, "--chown="):
			u, g, _ := strings.Cut(strings.TrimPrefix(a, "--chown="), ":")
			var err1, err2 error
			file.UID, err1 = strconv.Atoi(u)
			file.GID, err2 = strconv.Atoi(g)
			if err1 != nil || err2 != nil {
				return file, fmt.Errorf("--chown=%s: want numeric uid:gid", u+":"+g)
			}
		case strings.HasPrefix(a, "--"):
			return file, fmt.Errorf("option %s is not supported", a)
		default:
			rest = append(rest, a)
		}
	}
	if !fromBuild || len(rest) != 2 {
		return file, fmt.Errorf("want COPY --from=build SRC DEST")
	}
	file.Src, file.Dest = rest[0], rest[1]
	// The build stage makes its empty directories with mkdir (the data
	// directory); everything else it copies is a binary.
	file.Dir = !strings.HasPrefix(path.Base(file.Src), "codex-")
	return file, nil
}

// Build makes the image of s: the base layer, then one layer of the files,
// each binary read from sources[File.Src]. The image's OS and architecture
// are those the binaries were built for.
func Build(s Spec, sources map[string]string, arch string) (v1.Image, error) {
	base, err := baseLayer()
	if err != nil {
		return nil, err
	}
	var b tarWriter
	for _, f := range s.Files {
		if f.Dir {
			b.dir(f.Dest, 0o755, f.UID, f.GID)
			continue
		}
		src, ok := sources[f.Src]
		if !ok {
			return nil, fmt.Errorf("no file built for %s", f.Src)
		}
		data, err := os.ReadFile(src)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", f.Src, err)
		}
		b.file(f.Dest, 0o755, f.UID, f.GID, data)
	}
	app, err := b.layer()
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, base, app)
	if err != nil {
		return nil, fmt.Errorf("append layers: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = arch, "linux"
	cf.Created = v1.Time{Time: epoch}
	for i := range cf.History {
		cf.History[i].Created = v1.Time{Time: epoch}
	}
	cf.Config = s.Config
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("set config: %w", err)
	}
	return img, nil
}

// baseLayer is what the binaries use of the distroless static base.
func baseLayer() (v1.Layer, error) {
	ca, err := os.ReadFile(CABundle)
	if err != nil {
		return nil, fmt.Errorf("read the CA bundle (install Debian's ca-certificates): %w", err)
	}
	var b tarWriter
	b.dir("/etc", 0o755, 0, 0)
	b.file("/etc/passwd", 0o644, 0, 0, []byte("root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"))
	b.file("/etc/group", 0o644, 0, 0, []byte("root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n"))
	b.dir("/etc/ssl", 0o755, 0, 0)
	b.dir("/etc/ssl/certs", 0o755, 0, 0)
	b.file("/etc/ssl/certs/ca-certificates.crt", 0o644, 0, 0, ca)
	b.dir("/home", 0o755, 0, 0)
	b.dir("/home/nonroot", 0o700, 65532, 65532)
	b.dir("/root", 0o700, 0, 0)
	b.dir("/tmp", 0o1777, 0, 0)
	return b.layer()
}

// tarWriter builds a layer's tar with fixed times, creating the parent
// directories of each entry once.
type tarWriter struct {
	buf  bytes.Buffer
	tw   *tar.Writer
	made map[string]bool
	err  error
}

func (b *tarWriter) put(h *tar.Header, data []byte) {
	if b.tw == nil {
		b.tw, b.made = tar.NewWriter(&b.buf), map[string]bool{}
	}
	if b.err != nil {
		return
	}
	name := strings.TrimPrefix(h.Name, "/")
	if dir := path.Dir(name); dir != "." && !b.made[dir] {
		b.put(&tar.Header{Name: "/" + dir, Typeflag: tar.TypeDir, Mode: 0o755}, nil)
	}
	if h.Typeflag == tar.TypeDir {
		if b.made[name] {
			return
		}
		b.made[name] = true
		name += "/"
	}
	h.Name, h.ModTime, h.Format = name, epoch, tar.FormatPAX
	if b.err = b.tw.WriteHeader(h); b.err == nil && data != nil {
		_, b.err = b.tw.Write(data)
	}
}

func (b *tarWriter) dir(name string, mode int64, uid, gid int) {
	b.put(&tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: mode, Uid: uid, Gid: gid}, nil)
}

func (b *tarWriter) file(name string, mode int64, uid, gid int, data []byte) {
	b.put(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: mode, Uid: uid, Gid: gid, Size: int64(len(data))}, data)
}

func (b *tarWriter) layer() (v1.Layer, error) {
	if b.tw == nil {
		b.tw = tar.NewWriter(&b.buf)
	}
	if b.err != nil {
		return nil, fmt.Errorf("write layer: %w", b.err)
	}
	if err := b.tw.Close(); err != nil {
		return nil, fmt.Errorf("write layer: %w", err)
	}
	data := b.buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	})
}

// Files lists the paths in img's filesystem, sorted: what a reader of the
// image sees after every layer is applied.
func Files(img v1.Image) ([]string, error) {
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read image filesystem: %w", err)
		}
		names = append(names, "/"+strings.TrimSuffix(h.Name, "/"))
	}
	sort.Strings(names)
	return names, nil
}

// Images are the images of the repository: name → its Dockerfile, the
// module and command its binary is built from.
var Images = []struct{ Name, Dockerfile, Module, Cmd string }{
	{"codex-edge", "deploy/docker/edge.Dockerfile", "edge", "./cmd/codex-edge"},
	{"codex-controlplane", "deploy/docker/controlplane.Dockerfile", "controlplane", "./cmd/codex-controlplane"},
}

// BuildAll builds every image from the repository at root into outDir as
// outDir/<name>.tar, tagged <name>:<version>, and returns the tarballs'
// paths by image name. progress gets a line per step.
func BuildAll(ctx context.Context, root, outDir, version string, progress io.Writer) (map[string]string, error) {
	work, err := os.MkdirTemp("", "codex-image-")
	if err != nil {
		return nil, err
	}
	defer func() { _ = os.RemoveAll(work) }() // a temporary directory: nothing to do if it stays
	if err := os.MkdirAll(outDir, 0o750); err != nil {
		return nil, err
	}
	arch := runtime.GOARCH
	out := map[string]string{}
	for _, im := range Images {
		fmt.Fprintf(progress, "==> %s: building the binaries (as make build does)\n", im.Name)
		bin := filepath.Join(work, im.Name)
		if err := goBuild(ctx, filepath.Join(root, im.Module), arch, filepath.Join(bin, im.Name), im.Cmd); err != nil {
			return nil, err
		}
		if err := goBuild(ctx, filepath.Join(root, "deploy/docker"), arch, filepath.Join(bin, "codex-healthcheck"), "healthcheck.go"); err != nil {
			return nil, err
		}
		f, err := os.Open(filepath.Join(root, im.Dockerfile))
		if err != nil {
			return nil, err
		}
		d, err := deploytest.ParseDockerfile(f)
		_ = f.Close() // opened for reading
		if err != nil {
			return nil, fmt.Errorf("%s: %w", im.Dockerfile, err)
		}
		spec, err := FromDockerfile(d, map[string]string{"VERSION": version})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", im.Dockerfile, err)
		}
		img, err := Build(spec, map[string]string{
			"/out/" + im.Name:        filepath.Join(bin, im.Name),
			"/out/codex-healthcheck": filepath.Join(bin, "codex-healthcheck"),
		}, arch)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", im.Name, err)
		}
		tag, err := name.NewTag(im.Name + ":" + version)
		if err != nil {
			return nil, err
		}
		p := filepath.Join(outDir, im.Name+".tar")
		if err := tarball.WriteToFile(p, tag, img); err != nil {
			return nil, fmt.Errorf("write %s: %w", p, err)
		}
		digest, err := img.Digest()
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(progress, "==> %s: %s (%s, load it with: docker load -i %s)\n", im.Name, p, digest, p)
		out[im.Name] = p
	}
	return out, nil
}

// goBuild builds pkg in dir the way the Dockerfiles do: static, trimmed,
// without the workspace (each module's replace directives suffice).
func goBuild(ctx context.Context, dir, arch, out, pkg string) error {
	//nolint:gosec // G204: go build of the repository's own packages into a path this package chose
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s in %s: %w\n%s", pkg, dir, err, b)
	}
	return nil
}
