package deploytest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

const chartDir = "deploy/helm/codex-edge"

// kubeVersion is the cluster version the chart is rendered for: a helm
// built with go install defaults to v1.20, below the chart's kubeVersion.
const kubeVersion = "1.31.0"

// helmBin is the helm that scripts/deploy-checks.sh builds into .tmp/bin
// (or CODEX_HELM). Without it the chart cannot be checked: that is a
// failure, with the command that fixes it.
func helmBin(t *testing.T) string {
	t.Helper()
	if h := os.Getenv("CODEX_HELM"); h != "" {
		return h
	}
	h, err := filepath.Abs(filepath.Join(repoRoot, ".tmp/bin/helm"))
	if err == nil {
		if _, err = os.Stat(h); err == nil {
			return h
		}
	}
	t.Fatalf("no helm binary (%v): run scripts/deploy-checks.sh tools, or set CODEX_HELM", err)
	return ""
}

// render runs helm template with the chart's ci values file (if any) and
// extra --set flags, and returns the manifests by kind/name.
func render(t *testing.T, valuesFile string, set ...string) (map[string]map[string]any, error) {
	t.Helper()
	return renderArgs(t, valuesFile, nil, set...)
}

// renderArgs is render with extra helm flags.
func renderArgs(t *testing.T, valuesFile string, flags []string, set ...string) (map[string]map[string]any, error) {
	t.Helper()
	args := []string{"template", "codex", filepath.Join(repoRoot, chartDir), "--namespace", "codex", "--kube-version", kubeVersion}
	if valuesFile != "" {
		args = append(args, "-f", filepath.Join(repoRoot, chartDir, "ci", valuesFile))
	}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	args = append(args, flags...)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, helmBin(t), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, errors.New(strings.TrimSpace(stderr.String()))
	}
	docs := map[string]map[string]any{}
	dec := yaml.NewDecoder(bytes.NewReader(out))
	for {
		var m map[string]any
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("rendered chart is not YAML: %v", err)
		}
		if m == nil {
			continue
		}
		kind, _ := m["kind"].(string)
		name, _ := dig(m, "metadata", "name").(string)
		docs[kind+"/"+name] = m
	}
	return docs, nil
}

// dig walks maps and lists ("0" indexes a list).
func dig(v any, path ...string) any {
	for _, p := range path {
		switch x := v.(type) {
		case map[string]any:
			v = x[p]
		case []any:
			i := 0
			for _, c := range p {
				i = i*10 + int(c-'0')
			}
			if i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

func kinds(docs map[string]map[string]any) []string {
	var k []string
	for key := range docs {
		k = append(k, key)
	}
	slices.Sort(k)
	return k
}

// checkManifests holds rendered manifests to issue 9: non-root, read-only
// root filesystem, no capabilities, probes on /healthz and /readyz over
// HTTPS, secrets only by reference, and only variables the edge reads.
func checkManifests(docs map[string]map[string]any) []string {
	var p []string
	dep := docs["Deployment/codex-codex-edge"]
	if dep == nil {
		return []string{"no Deployment/codex-codex-edge in " + strings.Join(kinds(docs), ", ")}
	}
	for key := range docs {
		if strings.HasPrefix(key, "Secret/") || strings.HasPrefix(key, "ConfigMap/") {
			p = append(p, key+": the chart must not carry configuration or secret values, only references")
		}
	}
	pod := dig(dep, "spec", "template", "spec")
	if dig(pod, "securityContext", "runAsNonRoot") != true {
		p = append(p, "pod securityContext.runAsNonRoot is not true")
	}
	if uid, _ := dig(pod, "securityContext", "runAsUser").(int); uid == 0 {
		p = append(p, "pod securityContext.runAsUser is 0 or unset")
	}
	if dig(pod, "automountServiceAccountToken") != false {
		p = append(p, "automountServiceAccountToken is not false")
	}
	containers, _ := dig(pod, "containers").([]any)
	if len(containers) == 0 {
		return append(p, "no containers")
	}
	for _, c := range containers {
		name, _ := dig(c, "name").(string)
		sc := dig(c, "securityContext")
		if dig(sc, "readOnlyRootFilesystem") != true {
			p = append(p, name+": readOnlyRootFilesystem is not true")
		}
		if dig(sc, "allowPrivilegeEscalation") != false {
			p = append(p, name+": allowPrivilegeEscalation is not false")
		}
		if drop, _ := dig(sc, "capabilities", "drop").([]any); !slices.Contains(drop, any("ALL")) {
			p = append(p, name+": capabilities.drop lacks ALL")
		}
		if add := dig(sc, "capabilities", "add"); add != nil {
			p = append(p, name+": adds capabilities")
		}
		if dig(sc, "privileged") == true {
			p = append(p, name+": privileged")
		}
		for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz", "startupProbe": "/healthz"} {
			if dig(c, probe, "httpGet", "path") != path || dig(c, probe, "httpGet", "scheme") != "HTTPS" {
				p = append(p, name+": "+probe+" is not an HTTPS GET of "+path)
			}
		}
		var names []string
		env, _ := dig(c, "env").([]any)
		for _, e := range env {
			n, _ := dig(e, "name").(string)
			names = append(names, n)
			_, hasValue := dig(e, "value").(string)
			if secretish(n) && n != "CODEX_BYOK_KEY_FILE" && (hasValue || dig(e, "valueFrom", "secretKeyRef", "name") == nil) {
				p = append(p, name+": "+n+" is not a secretKeyRef")
			}
		}
		if un := Unread(Edge, names); len(un) > 0 {
			p = append(p, name+": sets variables codex-edge does not read: "+strings.Join(un, ", "))
		}
		for _, v := range Design8[Edge] {
			if !slices.Contains(names, v) && v != "CODEX_DATABASE_URL" && v != "CODEX_REDIS_URL" {
				p = append(p, name+": lacks "+v+" (DESIGN §8)")
			}
		}
	}
	return p
}

func TestHelmMinimal(t *testing.T) {
	docs, err := render(t, "minimal-values.yaml")
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	for _, p := range checkManifests(docs) {
		t.Error(p)
	}
	for _, want := range []string{"Deployment/codex-codex-edge", "Service/codex-codex-edge", "PodDisruptionBudget/codex-codex-edge", "ServiceAccount/codex-codex-edge"} {
		if docs[want] == nil {
			t.Errorf("no %s in %v", want, kinds(docs))
		}
	}
	for _, absent := range []string{"Ingress/codex-codex-edge", "HorizontalPodAutoscaler/codex-codex-edge"} {
		if docs[absent] != nil {
			t.Errorf("%s rendered although disabled by default", absent)
		}
	}
	dep := docs["Deployment/codex-codex-edge"]
	if dig(dep, "spec", "replicas") != 2 {
		t.Errorf("replicas = %v, want 2", dig(dep, "spec", "replicas"))
	}
	env := envMap(dep)
	if env["CODEX_SHARE_METRICS"] != "false" {
		t.Errorf("CODEX_SHARE_METRICS = %q, want false by default", env["CODEX_SHARE_METRICS"])
	}
	if _, ok := env["CODEX_ENROLLMENT_TOKEN"]; ok {
		t.Error("enrollment token referenced while sharing is off")
	}
	if env["CODEX_ADMIN_LISTEN"] != "127.0.0.1:8081" {
		t.Errorf("CODEX_ADMIN_LISTEN = %q, want loopback by default", env["CODEX_ADMIN_LISTEN"])
	}
}

func TestHelmFull(t *testing.T) {
	docs, err := render(t, "full-values.yaml")
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	for _, p := range checkManifests(docs) {
		t.Error(p)
	}
	for _, want := range []string{"Ingress/codex-codex-edge", "HorizontalPodAutoscaler/codex-codex-edge", "PodDisruptionBudget/codex-codex-edge"} {
		if docs[want] == nil {
			t.Errorf("no %s in %v", want, kinds(docs))
		}
	}
	dep := docs["Deployment/codex-codex-edge"]
	if r := dig(dep, "spec", "replicas"); r != nil {
		t.Errorf("replicas = %v with the autoscaler on; want unset", r)
	}
	env := envMap(dep)
	for k, want := range map[string]string{
		"CODEX_KEK": "byok", "CODEX_BYOK_KEY_FILE": "/etc/codex/byok/key", "CODEX_SHARE_METRICS": "true",
		"CODEX_CONTROLPLANE_URL": "https://app.persiv.example", "CODEX_ADMIN_LISTEN": "0.0.0.0:8081",
		"CODEX_METADATA_QUEUE": "131072", "CODEX_ENROLLMENT_TOKEN": "secret:codex-enrollment/token",
		"CODEX_ADMIN_TOKEN": "secret:codex-admin-token/token",
		"OPENAI_API_KEY":    "secret:codex-providers/openai", "CODEX_DATABASE_URL": "secret:codex-database/url",
		"CODEX_TRUSTED_PROXIES":   "10.0.0.0/16",
		"CODEX_CONTROLPLANE_PINS": "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=,jb1Z5gWHyWs7D8cv0Yg8a5e7rQ3E3a2zqZx3o2Tq0Uo=",
	} {
		if env[k] != want {
			t.Errorf("%s = %q, want %q", k, env[k], want)
		}
	}
	if img := dig(dep, "spec", "template", "spec", "containers", "0", "image"); !strings.Contains(img.(string), "@sha256:") {
		t.Errorf("image %v does not use the digest", img)
	}
}

// natsEgress reports whether a NetworkPolicy allows egress to port 4222.
func natsEgress(np map[string]any) bool {
	egress, _ := dig(np, "spec", "egress").([]any)
	for _, e := range egress {
		ports, _ := dig(e, "ports").([]any)
		for _, p := range ports {
			if dig(p, "port") == 4222 {
				return true
			}
		}
	}
	return false
}

func TestHelmNetworkPolicy(t *testing.T) {
	full, err := render(t, "full-values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	np := full["NetworkPolicy/codex-codex-edge"]
	if np == nil {
		t.Fatalf("no NetworkPolicy in %v", kinds(full))
	}
	if !natsEgress(np) {
		t.Error("sharing on: no egress to the control plane's NATS")
	}
	off, err := render(t, "full-values.yaml", "config.shareMetrics=false")
	if err != nil {
		t.Fatal(err)
	}
	if natsEgress(off["NetworkPolicy/codex-codex-edge"]) {
		t.Error("sharing off: the NetworkPolicy still allows egress to NATS")
	}
	// Egress rules without destinations would allow every destination.
	noStores, err := render(t, "full-values.yaml", "networkPolicy.stores.cidrs=null")
	if err != nil {
		t.Fatal(err)
	}
	egress, _ := dig(noStores["NetworkPolicy/codex-codex-edge"], "spec", "egress").([]any)
	for _, e := range egress {
		ports, _ := dig(e, "ports").([]any)
		if dig(e, "to") == nil && len(ports) > 0 && dig(ports[0], "port") != 53 && dig(ports[0], "port") != 443 {
			t.Errorf("egress rule to anywhere on %v", ports)
		}
	}
}

// envMap flattens the edge container's env: values, or secret:<name>/<key>.
func envMap(dep map[string]any) map[string]string {
	m := map[string]string{}
	env, _ := dig(dep, "spec", "template", "spec", "containers", "0", "env").([]any)
	for _, e := range env {
		n, _ := dig(e, "name").(string)
		if v, ok := dig(e, "value").(string); ok {
			m[n] = v
		} else if s, ok := dig(e, "valueFrom", "secretKeyRef", "name").(string); ok {
			k, _ := dig(e, "valueFrom", "secretKeyRef", "key").(string)
			m[n] = "secret:" + s + "/" + k
		}
	}
	return m
}

// Values that would break a promise must stop the render.
func TestHelmRefusesUnsafeValues(t *testing.T) {
	tests := []struct {
		name, values string
		set          []string
		want         string
	}{
		{"no tls secret", "", nil, "tls.existingSecret is required"},
		{"local key", "minimal-values.yaml", []string{"config.kek=local"}, "config.kek must be"},
		{"byok without secret", "minimal-values.yaml", []string{"config.kek=byok"}, "secrets.byok.existingSecret"},
		{"sharing without token", "minimal-values.yaml", []string{"config.shareMetrics=true", "config.controlplaneUrl=https://x"}, "secrets.enrollment.existingSecret"},
		{"metrics without admin token", "minimal-values.yaml", []string{"metrics.enabled=true"}, "secrets.adminToken.existingSecret"},
		{"extraEnv overriding", "minimal-values.yaml", []string{"config.extraEnv.CODEX_KEK=local"}, "sets this variable itself"},
		{"typo in a value", "minimal-values.yaml", []string{"config.shareMetric=true"}, "shareMetric"},
		{"read-write root by value", "minimal-values.yaml", []string{"securityContext.readOnlyRootFilesystem=false"}, "readOnlyRootFilesystem"},
		{"latest tag", "minimal-values.yaml", []string{"image.tag=latest"}, "/image/tag"},
		{"provider key named like a setting", "minimal-values.yaml", []string{"secrets.providers[0].env=CODEX_KEK", "secrets.providers[0].existingSecret=s", "secrets.providers[0].key=k"}, "must not start with CODEX_"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := render(t, tt.values, tt.set...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("render error = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

func TestHelmManifestRulesFindProblems(t *testing.T) {
	docs, err := render(t, "minimal-values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		set  []string
		want string
	}{
		{"writable root", []string{"securityContext.readOnlyRootFilesystem=false"}, "readOnlyRootFilesystem"},
		{"root allowed", []string{"podSecurityContext.runAsNonRoot=false"}, "runAsNonRoot"},
		{"escalation", []string{"securityContext.allowPrivilegeEscalation=true"}, "allowPrivilegeEscalation"},
		{"capabilities", []string{"securityContext.capabilities.drop=null"}, "drop lacks ALL"},
		{"unknown variable", []string{"config.extraEnv.CODEX_LISTNE=x"}, "does not read: CODEX_LISTNE"},
	}
	if len(checkManifests(docs)) != 0 {
		t.Fatalf("minimal render has problems: %v", checkManifests(docs))
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The values schema refuses most of these values already; the
			// manifest rules are the second line, checked without it.
			d, err := renderArgs(t, "minimal-values.yaml", []string{"--skip-schema-validation"}, tt.set...)
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Join(checkManifests(d), "\n")
			if !strings.Contains(got, tt.want) {
				t.Fatalf("problems %q do not mention %q", got, tt.want)
			}
		})
	}
	// A Secret carrying values is refused wherever it comes from.
	docs["Secret/x"] = map[string]any{"kind": "Secret"}
	if got := strings.Join(checkManifests(docs), "\n"); !strings.Contains(got, "only references") {
		t.Errorf("a rendered Secret was not flagged: %q", got)
	}
}

// values.yaml documents every top-level key with a comment.
func TestHelmValuesDocumented(t *testing.T) {
	var root yaml.Node
	if err := yaml.Unmarshal(readFile(t, chartDir+"/values.yaml"), &root); err != nil {
		t.Fatalf("values.yaml: %v", err)
	}
	m := root.Content[0]
	for i := 0; i < len(m.Content); i += 2 {
		k := m.Content[i]
		if strings.TrimSpace(k.HeadComment) == "" {
			t.Errorf("values.yaml: top-level key %s (line %d) has no comment", k.Value, k.Line)
		}
	}
}
