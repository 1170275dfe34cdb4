package deploytest

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the inputs/outputs tables of the Terraform READMEs")

const (
	docsBegin = "<!-- BEGIN_TF_DOCS -->"
	docsEnd   = "<!-- END_TF_DOCS -->"
)

// moduleDocs renders the inputs and outputs tables of a module, in file
// order, as registry modules document them.
func moduleDocs(m tfModule) string {
	var b strings.Builder
	cell := func(s string) string {
		s = strings.Join(strings.Fields(s), " ")
		return strings.ReplaceAll(s, "|", `\|`)
	}
	b.WriteString("## Inputs\n\n| Name | Description | Type | Default | Required |\n|------|-------------|------|---------|:--------:|\n")
	for _, blk := range m.blocks("variable") {
		desc, _ := literalString(blk.Body.Attributes["description"].Expr)
		typ := ""
		if a, ok := blk.Body.Attributes["type"]; ok {
			typ = m.text(a.Expr.Range())
		}
		def, req := "n/a", "yes"
		if a, ok := blk.Body.Attributes["default"]; ok {
			def, req = "`"+cell(m.text(a.Expr.Range()))+"`", "no"
		}
		b.WriteString("| `" + blk.Labels[0] + "` | " + cell(desc) + " | `" + cell(typ) + "` | " + def + " | " + req + " |\n")
	}
	b.WriteString("\n## Outputs\n\n| Name | Description |\n|------|-------------|\n")
	for _, blk := range m.blocks("output") {
		desc, _ := literalString(blk.Body.Attributes["description"].Expr)
		b.WriteString("| `" + blk.Labels[0] + "` | " + cell(desc) + " |\n")
	}
	return b.String()
}

// Each module's README carries its inputs and outputs tables, generated
// from the HCL: `go test ./deploy/deploytest -run TestModuleREADMEs -update`
// rewrites them.
func TestModuleREADMEs(t *testing.T) {
	for _, m := range loadTerraform(t) {
		if !strings.HasPrefix(m.dir, filepath.Join("terraform", "modules")) {
			continue
		}
		path := filepath.Join(repoRoot, m.dir, "README.md")
		b, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("%s: %v", m.dir, err)
			continue
		}
		re := regexp.MustCompile(`(?s)` + regexp.QuoteMeta(docsBegin) + `.*` + regexp.QuoteMeta(docsEnd))
		if !re.Match(b) {
			t.Errorf("%s/README.md: no %s … %s section", m.dir, docsBegin, docsEnd)
			continue
		}
		want := docsBegin + "\n" + moduleDocs(m) + docsEnd
		got := re.Find(b)
		if string(got) == want {
			continue
		}
		if *update {
			if err := os.WriteFile(path, re.ReplaceAll(b, []byte(strings.ReplaceAll(want, "$", "$$"))), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		t.Errorf("%s/README.md: inputs/outputs tables are out of date: go test ./deploy/deploytest -run TestModuleREADMEs -update", m.dir)
	}
}

// deploy/INSTALL.md reads module outputs as $(o NAME) and names module
// inputs in HCL; each must exist in terraform/modules/edge.
func TestInstallGuideNamesRealOutputs(t *testing.T) {
	guide := string(readFile(t, "deploy/INSTALL.md"))
	var edge tfModule
	for _, m := range loadTerraform(t) {
		if m.dir == filepath.Join("terraform", "modules", "edge") {
			edge = m
		}
	}
	d := declarations(edge)
	outs := regexp.MustCompile(`\$\(o ([a-z_]+)\)`).FindAllStringSubmatch(guide, -1)
	if len(outs) == 0 {
		t.Fatal("INSTALL.md reads no module output")
	}
	for _, o := range outs {
		if !d.outputs[o[1]] {
			t.Errorf("INSTALL.md reads output %s, which terraform/modules/edge does not have", o[1])
		}
	}
	for _, v := range regexp.MustCompile("`([a-z_]+) = ").FindAllStringSubmatch(guide, -1) {
		if !d.vars[v[1]] {
			t.Errorf("INSTALL.md names input %s, which terraform/modules/edge does not have", v[1])
		}
	}
	for _, want := range []string{"## What leaves your VPC", "## What the module creates", "terraform apply", "base_url="} {
		if !strings.Contains(guide, want) {
			t.Errorf("INSTALL.md lacks %q", want)
		}
	}
}
