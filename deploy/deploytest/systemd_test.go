package deploytest

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
)

// checkUnit holds a unit to the hardening issue 9 asks for.
func checkUnit(u Unit) []string {
	var p []string
	want := map[string]string{
		"DynamicUser":           "yes",
		"ProtectSystem":         "strict",
		"NoNewPrivileges":       "yes",
		"ProtectHome":           "yes",
		"PrivateTmp":            "yes",
		"PrivateDevices":        "yes",
		"RestrictSUIDSGID":      "yes",
		"ProtectKernelTunables": "yes",
		"ProtectKernelModules":  "yes",
		"ProtectControlGroups":  "yes",
		"LockPersonality":       "yes",
		"CapabilityBoundingSet": "",
	}
	for k, v := range want {
		if _, set := u["Service"][k]; !set || u.Last("Service", k) != v {
			p = append(p, "[Service] "+k+" is not "+v)
		}
	}
	if u.Last("Service", "StateDirectory") == "" {
		p = append(p, "[Service] no StateDirectory (the data directory)")
	}
	if u.Last("Service", "EnvironmentFile") == "" {
		p = append(p, "[Service] no EnvironmentFile (secrets never go in the unit)")
	}
	if !strings.Contains(u.Last("Service", "ExecStart"), "codex-edge serve") {
		p = append(p, "[Service] ExecStart does not run codex-edge serve")
	}
	env := u.Environment()
	if dd := env["CODEX_DATA_DIR"]; dd == "" || !strings.HasSuffix(dd, "/"+u.Last("Service", "StateDirectory")) {
		p = append(p, "[Service] CODEX_DATA_DIR "+dd+" is not the StateDirectory")
	}
	for k := range env {
		if secretish(k) {
			p = append(p, "[Service] "+k+" is set in the unit: secrets belong in the EnvironmentFile")
		}
	}
	var names []string
	for k := range env {
		names = append(names, k)
	}
	if un := Unread(Edge, names); len(un) > 0 {
		p = append(p, "[Service] sets variables codex-edge does not read: "+strings.Join(un, ", "))
	}
	return p
}

func TestSystemdUnit(t *testing.T) {
	u, err := ParseUnit(bytes.NewReader(readFile(t, "deploy/systemd/codex-edge.service")))
	if err != nil {
		t.Fatalf("deploy/systemd/codex-edge.service: %v", err)
	}
	for _, p := range checkUnit(u) {
		t.Error("deploy/systemd/codex-edge.service: " + p)
	}
}

// The example environment file sets only variables the edge reads (and
// provider keys), and carries the DESIGN §8 ones the unit does not.
func TestSystemdEnvironmentFile(t *testing.T) {
	u, err := ParseUnit(bytes.NewReader(readFile(t, "deploy/systemd/codex-edge.service")))
	if err != nil {
		t.Fatal(err)
	}
	set := u.Environment()
	sc := bufio.NewScanner(bytes.NewReader(readFile(t, "deploy/systemd/edge.env.example")))
	var names []string
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, _, ok := strings.Cut(line, "=")
		if !ok {
			t.Errorf("edge.env.example: not NAME=value: %q", line)
			continue
		}
		names = append(names, k)
		set[k] = "file"
	}
	if un := Unread(Edge, names); len(un) > 0 {
		t.Errorf("edge.env.example sets variables codex-edge does not read: %v", un)
	}
	for _, v := range Design8[Edge] {
		if _, ok := set[v]; !ok {
			t.Errorf("neither the unit nor edge.env.example sets %s (DESIGN §8)", v)
		}
	}
}

func TestUnitRulesFindProblems(t *testing.T) {
	good := string(readFileNoT("deploy/systemd/codex-edge.service"))
	tests := []struct{ name, from, to, want string }{
		{"root", "DynamicUser=yes", "DynamicUser=no", "DynamicUser"},
		{"writable system", "ProtectSystem=strict", "ProtectSystem=full", "ProtectSystem"},
		{"privileges", "NoNewPrivileges=yes", "", "NoNewPrivileges"},
		{"capabilities", "CapabilityBoundingSet=\n", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n", "CapabilityBoundingSet"},
		{"no env file", "EnvironmentFile=/etc/codex/edge.env", "", "EnvironmentFile"},
		{"secret inline", "Environment=CODEX_LISTEN=0.0.0.0:8443", "Environment=CODEX_LISTEN=0.0.0.0:8443 CODEX_BYOK_KEY=abc", "secrets belong"},
		{"unknown var", "Environment=CODEX_LISTEN=0.0.0.0:8443", "Environment=CODEX_LISTEN=0.0.0.0:8443 CODEX_PORT=1", "CODEX_PORT"},
		{"data dir elsewhere", "Environment=CODEX_DATA_DIR=/var/lib/codex-edge", "Environment=CODEX_DATA_DIR=/opt/codex", "not the StateDirectory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(good, tt.from) {
				t.Fatalf("unit lacks %q", tt.from)
			}
			u, err := ParseUnit(strings.NewReader(strings.Replace(good, tt.from, tt.to, 1)))
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Join(checkUnit(u), "\n")
			if !strings.Contains(got, tt.want) {
				t.Fatalf("problems %q do not mention %q", got, tt.want)
			}
		})
	}
}

func TestParseUnit(t *testing.T) {
	u, err := ParseUnit(strings.NewReader("# c\n[Service]\n; c\nEnvironment=A=1 \"B=2\"\nEnvironment=C=3\nExecStart=/x \\\n  serve\nX=\n"))
	if err != nil {
		t.Fatal(err)
	}
	env := u.Environment()
	if env["A"] != "1" || env["B"] != "2" || env["C"] != "3" {
		t.Errorf("Environment = %v", env)
	}
	if got := u.Last("Service", "ExecStart"); got != "/x  serve" && got != "/x serve" {
		t.Errorf("ExecStart = %q", got)
	}
	if _, ok := u["Service"]["X"]; !ok || u.Last("Service", "X") != "" {
		t.Errorf("X = %v", u["Service"]["X"])
	}
	for _, bad := range []string{"A=1\n", "[Service\n", "[Service]\nnoequals\n", "[Service]\nA=\\"} {
		if _, err := ParseUnit(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseUnit(%q): no error", bad)
		}
	}
}

func FuzzParseUnit(f *testing.F) {
	f.Add("[Service]\nEnvironment=A=1\n")
	f.Add("[Unit]\nDescription=x \\\n y\n")
	f.Add("[]\n=\n")
	f.Fuzz(func(t *testing.T, src string) {
		u, err := ParseUnit(strings.NewReader(src))
		if err != nil {
			return
		}
		for sec, keys := range u {
			if sec == "" {
				t.Fatal("empty section name")
			}
			for k := range keys {
				if k == "" || strings.ContainsAny(k, "=\n") {
					t.Fatalf("bad key %q", k)
				}
			}
		}
		_ = u.Environment()
		_ = checkUnit(u)
	})
}
