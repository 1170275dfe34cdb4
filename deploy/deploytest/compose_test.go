package deploytest

import (
	"bytes"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

type composeFile struct {
	Name     string                    `yaml:"name"`
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
	// Extensions holds the x- keys (YAML anchors for shared settings).
	Extensions map[string]any `yaml:",inline"`
}

type composeService struct {
	Image       string            `yaml:"image"`
	Build       *composeBuild     `yaml:"build"`
	Command     any               `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Ports       []string          `yaml:"ports"`
	Volumes     []string          `yaml:"volumes"`
	ReadOnly    bool              `yaml:"read_only"`
	User        string            `yaml:"user"`
	CapDrop     []string          `yaml:"cap_drop"`
	SecurityOpt []string          `yaml:"security_opt"`
	DependsOn   map[string]any    `yaml:"depends_on"`
	Restart     string            `yaml:"restart"`
	Healthcheck map[string]any    `yaml:"healthcheck"`
}

type composeBuild struct {
	Context    string `yaml:"context"`
	Dockerfile string `yaml:"dockerfile"`
}

// parseCompose decodes a compose file strictly: an unknown key is an
// error, so a typo (enviroment:) cannot hide a service's settings.
func parseCompose(src []byte) (*composeFile, error) {
	dec := yaml.NewDecoder(bytes.NewReader(src))
	dec.KnownFields(true)
	var c composeFile
	if err := dec.Decode(&c); err != nil {
		return nil, err
	}
	for k := range c.Extensions {
		if !strings.HasPrefix(k, "x-") {
			return nil, fmt.Errorf("unknown top-level key %s", k)
		}
	}
	return &c, nil
}

// binaryOf says which codex binary a service runs, by the Dockerfile it
// builds from.
func binaryOf(s composeService) (Binary, bool) {
	if s.Build == nil {
		return "", false
	}
	switch {
	case strings.HasSuffix(s.Build.Dockerfile, "edge.Dockerfile"):
		return Edge, true
	case strings.HasSuffix(s.Build.Dockerfile, "controlplane.Dockerfile"):
		return Controlplane, true
	}
	return "", false
}

func checkCompose(c *composeFile) []string {
	var p []string
	for _, want := range []string{"edge", "controlplane", "postgres", "redis", "nats"} {
		if _, ok := c.Services[want]; !ok {
			p = append(p, "no service "+want)
		}
	}
	names := make([]string, 0, len(c.Services))
	for n := range c.Services {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, name := range names {
		s := c.Services[name]
		img := s.Image
		if i := strings.Index(img, ":-"); strings.HasPrefix(img, "${") && i > 0 {
			img = strings.TrimSuffix(img[i+2:], "}") // the default of ${VAR:-default}
		}
		if !strings.Contains(lastSegment(img), ":") || strings.HasSuffix(img, ":latest") {
			p = append(p, name+": image "+s.Image+" is not pinned to a version")
		}
		for _, port := range s.Ports {
			if !strings.HasPrefix(port, "127.0.0.1:") {
				p = append(p, name+": port "+port+" is published on every interface (bind 127.0.0.1)")
			}
		}
		b, isCodex := binaryOf(s)
		var envNames []string
		for k := range s.Environment {
			envNames = append(envNames, k)
		}
		if !isCodex {
			for _, k := range envNames {
				if IsSetting(k) {
					p = append(p, name+": sets "+k+" but runs no codex binary")
				}
			}
			continue
		}
		if un := Unread(b, envNames); len(un) > 0 {
			p = append(p, name+": sets variables "+string(b)+" does not read: "+strings.Join(un, ", "))
		}
		if a := s.Environment["CODEX_ADMIN_LISTEN"]; b == Edge && a != "" && !strings.HasPrefix(a, "127.0.0.1:") &&
			s.Environment["CODEX_ADMIN_TOKEN"] == "" && s.Environment["CODEX_ADMIN_TOKEN_FILE"] == "" {
			// The edge refuses to start so: its admin API would be open.
			p = append(p, name+": admin API on "+a+" without CODEX_ADMIN_TOKEN(_FILE)")
		}
		if !s.ReadOnly {
			p = append(p, name+": read_only is not true")
		}
		if uid, _, _ := strings.Cut(s.User, ":"); !regexp.MustCompile(`^[1-9][0-9]*$`).MatchString(uid) {
			p = append(p, name+": user "+s.User+" is not a numeric non-root uid")
		}
		if !slices.Contains(s.CapDrop, "ALL") {
			p = append(p, name+": cap_drop lacks ALL")
		}
		if !slices.Contains(s.SecurityOpt, "no-new-privileges:true") {
			p = append(p, name+": security_opt lacks no-new-privileges:true")
		}
		for k, v := range s.Environment {
			if secretish(k) && !strings.Contains(v, "${") && v != "" && !strings.HasPrefix(v, "/") {
				p = append(p, name+": "+k+" holds a literal secret (interpolate it from .env or use a file)")
			}
		}
	}
	return p
}

// secretish names the variables whose values are credentials.
func secretish(k string) bool {
	return k == "CODEX_DATABASE_URL" || k == "CODEX_REDIS_URL" || strings.HasPrefix(k, "CODEX_BYOK_KEY") ||
		k == "CODEX_BYOK_PREVIOUS_KEYS" || k == "CODEX_ENROLLMENT_TOKEN" || strings.HasSuffix(k, "_API_KEY") || strings.HasSuffix(k, "PASSWORD")
}

func TestCompose(t *testing.T) {
	c, err := parseCompose(readFile(t, "deploy/compose/compose.yaml"))
	if err != nil {
		t.Fatalf("deploy/compose/compose.yaml: %v", err)
	}
	for _, p := range checkCompose(c) {
		t.Error("deploy/compose/compose.yaml: " + p)
	}
	// Same variables as production: the edge and the control plane get
	// every DESIGN §8 variable a production deployment sets.
	for svc, b := range map[string]Binary{"edge": Edge, "controlplane": Controlplane} {
		for _, v := range Design8[b] {
			if _, ok := c.Services[svc].Environment[v]; !ok {
				t.Errorf("compose service %s lacks %s (DESIGN §8, set in production)", svc, v)
			}
		}
	}
	if v := c.Services["edge"].Environment["CODEX_SHARE_METRICS"]; v != "false" {
		t.Errorf("compose edge: CODEX_SHARE_METRICS = %q, want \"false\" (sharing is opt-in)", v)
	}
	for _, dep := range []string{"edge-migrate", "controlplane-migrate"} {
		if cmd, _ := c.Services[dep].Command.([]any); len(cmd) == 0 || cmd[0] != "migrate" {
			t.Errorf("compose service %s does not run migrate", dep)
		}
	}
}

func TestComposeRulesFindProblems(t *testing.T) {
	base := `services:
  edge:
    image: codex-edge:dev
    build: {context: ../.., dockerfile: deploy/docker/edge.Dockerfile}
    read_only: true
    user: "65532:65532"
    cap_drop: [ALL]
    security_opt: ["no-new-privileges:true"]
    environment:
      CODEX_LISTEN: 0.0.0.0:8443
      CODEX_DATABASE_URL: postgres://codex_app:${PW}@postgres/codex
    ports: ["127.0.0.1:8443:8443"]
  controlplane: {image: "codex-controlplane:dev", build: {dockerfile: controlplane.Dockerfile}, read_only: true, user: "1", cap_drop: [ALL], security_opt: ["no-new-privileges:true"]}
  postgres: {image: "postgres:17.6"}
  redis: {image: "redis:7.4.6"}
  nats: {image: "nats:2.11.9"}
`
	tests := []struct{ name, from, to, want string }{
		{"good", "", "", ""},
		{"unknown variable", "CODEX_LISTEN:", "CODEX_LISTN:", "does not read: CODEX_LISTN"},
		{"control plane variable on the edge", "CODEX_LISTEN:", "CODEX_NATS_URL:", "does not read: CODEX_NATS_URL"},
		{"setting on a store", "postgres: {image: \"postgres:17.6\"}", "postgres: {image: \"postgres:17.6\", environment: {CODEX_X: y}}", "runs no codex binary"},
		{"writable", "read_only: true\n    user", "read_only: false\n    user", "read_only"},
		{"root", `user: "65532:65532"`, `user: "0"`, "non-root"},
		{"caps", "cap_drop: [ALL]\n    security_opt", "cap_drop: []\n    security_opt", "cap_drop"},
		{"latest", "postgres:17.6", "postgres:latest", "not pinned"},
		{"untagged", "nats:2.11.9", "nats", "not pinned"},
		{"public port", "127.0.0.1:8443:8443", "8443:8443", "every interface"},
		{"literal secret", "${PW}", "hunter2", "literal secret"},
		{"open admin API", "CODEX_LISTEN: 0.0.0.0:8443", "CODEX_LISTEN: 0.0.0.0:8443\n      CODEX_ADMIN_LISTEN: 0.0.0.0:8081", "without CODEX_ADMIN_TOKEN"},
		{"admin API with a token", "CODEX_LISTEN: 0.0.0.0:8443", "CODEX_LISTEN: 0.0.0.0:8443\n      CODEX_ADMIN_LISTEN: 0.0.0.0:8081\n      CODEX_ADMIN_TOKEN_FILE: /run/t", ""},
		{"missing service", "  nats: {image: \"nats:2.11.9\"}\n", "", "no service nats"},
		{"typo", "    environment:", "    enviroment:", "field enviroment not found"},
		{"top-level typo", "services:", "servics: {}\nservices:", "unknown top-level key servics"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := base
			if tt.from != "" {
				if !strings.Contains(src, tt.from) {
					t.Fatalf("fixture lacks %q", tt.from)
				}
				src = strings.Replace(src, tt.from, tt.to, 1)
			}
			c, err := parseCompose([]byte(src))
			var got string
			if err != nil {
				got = err.Error()
			} else {
				got = strings.Join(checkCompose(c), "\n")
			}
			if tt.want == "" && got != "" {
				t.Fatalf("unexpected problems:\n%s", got)
			}
			if !strings.Contains(got, tt.want) {
				t.Fatalf("problems %q do not mention %q", got, tt.want)
			}
		})
	}
}
