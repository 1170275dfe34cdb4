package deploytest

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// `tofu validate` cannot run on modules that use the AWS provider here (no
// registry), so this is its offline part: every var.*, local.*, module.*,
// data.* and resource reference names something the module declares, and
// every module.<name>.<output> an output of that (local) module.

type declared struct {
	vars, locals, outputs map[string]bool
	resources, data       map[string]bool // "type.name"
	modules               map[string]string
}

func declarations(m tfModule) declared {
	d := declared{vars: map[string]bool{}, locals: map[string]bool{}, outputs: map[string]bool{},
		resources: map[string]bool{}, data: map[string]bool{}, modules: map[string]string{}}
	for _, b := range m.bodies {
		for _, blk := range b.Blocks {
			switch blk.Type {
			case "variable":
				d.vars[blk.Labels[0]] = true
			case "output":
				d.outputs[blk.Labels[0]] = true
			case "locals":
				for n := range blk.Body.Attributes {
					d.locals[n] = true
				}
			case "resource":
				d.resources[blk.Labels[0]+"."+blk.Labels[1]] = true
			case "data":
				d.data[blk.Labels[0]+"."+blk.Labels[1]] = true
			case "module":
				src, _ := literalString(blk.Body.Attributes["source"].Expr)
				d.modules[blk.Labels[0]] = src
			}
		}
	}
	return d
}

func attrName(tr hcl.Traversal, i int) string {
	if i >= len(tr) {
		return ""
	}
	switch s := tr[i].(type) {
	case hcl.TraverseAttr:
		return s.Name
	case hcl.TraverseIndex:
		return "[index]"
	}
	return ""
}

// checkReferences returns the dangling references of m; modules resolves
// a local module source (relative to m.dir) to its declarations.
func checkReferences(m tfModule, modules func(dir string) (declared, bool)) []string {
	d := declarations(m)
	var p []string
	seen := map[string]bool{}
	report := func(rng hcl.Range, msg string) {
		s := rng.Filename + ":" + itoa(rng.Start.Line) + ": " + msg
		if !seen[s] {
			seen[s] = true
			p = append(p, s)
		}
	}
	builtins := map[string]bool{"each": true, "count": true, "self": true, "path": true, "terraform": true}
	check := func(tr hcl.Traversal) {
		root := tr.RootName()
		switch {
		case builtins[root]:
		case root == "var":
			if !d.vars[attrName(tr, 1)] {
				report(tr.SourceRange(), "var."+attrName(tr, 1)+" is not declared")
			}
		case root == "local":
			if !d.locals[attrName(tr, 1)] {
				report(tr.SourceRange(), "local."+attrName(tr, 1)+" is not declared")
			}
		case root == "data":
			if k := attrName(tr, 1) + "." + attrName(tr, 2); !d.data[k] {
				report(tr.SourceRange(), "data."+k+" is not declared")
			}
		case root == "module":
			name := attrName(tr, 1)
			src, ok := d.modules[name]
			if !ok {
				report(tr.SourceRange(), "module."+name+" is not declared")
				return
			}
			out := attrName(tr, 2)
			if out == "" || !strings.HasPrefix(src, ".") {
				return
			}
			if md, ok := modules(filepath.Join(m.dir, src)); !ok {
				report(tr.SourceRange(), "module."+name+": no module at "+src)
			} else if !md.outputs[out] {
				report(tr.SourceRange(), "module."+name+"."+out+" is not an output of "+src)
			}
		default:
			if k := root + "." + attrName(tr, 1); !d.resources[k] {
				report(tr.SourceRange(), k+" is not a declared resource")
			}
		}
	}
	// Variables() of a whole attribute expression keeps for-expression
	// symbols out; type constraints and ignore_changes are not references.
	// A dynamic block's iterator (its label, or its iterator attribute)
	// is a symbol inside its content, not a resource.
	var walk func(blockType string, body *hclsyntax.Body, iters []string)
	walk = func(blockType string, body *hclsyntax.Body, iters []string) {
		for name, a := range body.Attributes {
			if (blockType == "variable" && name == "type") || (blockType == "lifecycle" && name == "ignore_changes") {
				continue
			}
			for _, tr := range hclsyntax.Variables(a.Expr) {
				if !slices.Contains(iters, tr.RootName()) {
					check(tr)
				}
			}
		}
		for _, blk := range body.Blocks {
			inner := iters
			if blk.Type == "dynamic" && len(blk.Labels) > 0 {
				it := blk.Labels[0]
				if a, ok := blk.Body.Attributes["iterator"]; ok {
					it = hcl.ExprAsKeyword(a.Expr)
				}
				inner = append(slices.Clip(iters), it)
			}
			walk(blk.Type, blk.Body, inner)
		}
	}
	for _, b := range m.bodies {
		walk("", b, nil)
	}
	// Module calls must set only the callee's variables.
	for _, b := range m.bodies {
		for _, blk := range b.Blocks {
			if blk.Type != "module" {
				continue
			}
			src := d.modules[blk.Labels[0]]
			md, ok := modules(filepath.Join(m.dir, src))
			if !ok {
				continue
			}
			for a := range blk.Body.Attributes {
				if a != "source" && a != "version" && a != "count" && a != "for_each" && a != "providers" && a != "depends_on" && !md.vars[a] {
					report(blk.DefRange(), "module "+blk.Labels[0]+" sets "+a+", which "+src+" does not declare")
				}
			}
		}
	}
	slices.Sort(p)
	return p
}

func TestTerraformReferences(t *testing.T) {
	mods := loadTerraform(t)
	byDir := map[string]declared{}
	for _, m := range mods {
		byDir[filepath.Clean(m.dir)] = declarations(m)
	}
	lookup := func(dir string) (declared, bool) {
		d, ok := byDir[filepath.Clean(dir)]
		return d, ok
	}
	for _, m := range mods {
		for _, p := range checkReferences(m, lookup) {
			t.Error(p)
		}
	}
}

func TestReferencesFindProblems(t *testing.T) {
	callee := parseModule(t, "child", map[string]string{"main.tf": `variable "a" {
  type        = string
  description = "a"
}
output "o" {
  value       = var.a
  description = "o"
}`})
	lookup := func(dir string) (declared, bool) {
		if filepath.Clean(dir) == "child" {
			return declarations(callee), true
		}
		return declared{}, false
	}
	tests := []struct{ name, src, want string }{
		{"undeclared var", `output "x" { value = var.nope }`, "var.nope is not declared"},
		{"undeclared local", `locals { a = 1 }
output "x" { value = local.b }`, "local.b is not declared"},
		{"undeclared resource", `output "x" { value = aws_lb.nope.arn }`, "aws_lb.nope is not a declared resource"},
		{"undeclared data", `output "x" { value = data.aws_region.current.name }`, "data.aws_region.current is not declared"},
		{"unknown module output", `module "m" {
  source = "./child"
  a      = "x"
}
output "x" { value = module.m.nope }`, "module.m.nope is not an output"},
		{"dynamic iterator outside its block", `data "aws_iam_policy_document" "d" {
  dynamic "statement" {
    for_each = {}
    content { sid = "a" }
  }
  version = statement.value
}`, "statement.value is not a declared resource"},
		{"unknown module input", `module "m" {
  source = "./child"
  b      = "x"
}`, "sets b, which ./child does not declare"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := parseModule(t, ".", map[string]string{"main.tf": tt.src})
			got := strings.Join(checkReferences(m, lookup), "\n")
			if !strings.Contains(got, tt.want) {
				t.Fatalf("problems %q do not mention %q", got, tt.want)
			}
		})
	}
	ok := parseModule(t, ".", map[string]string{"main.tf": `module "m" {
  source = "./child"
  a      = "x"
}
locals { l = [for k, v in { a = 1 } : v if k != ""] }
output "x" { value = [module.m.o, local.l] }
data "aws_iam_policy_document" "d" {
  dynamic "statement" {
    for_each = local.l
    content { sid = statement.value }
  }
  dynamic "statement" {
    for_each = local.l
    iterator = s
    content { sid = s.key }
  }
}`})
	if p := checkReferences(ok, lookup); len(p) > 0 {
		t.Errorf("false positives: %v", p)
	}
}
