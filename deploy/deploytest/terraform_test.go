package deploytest

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// tfModule is the parsed .tf files of one directory.
type tfModule struct {
	dir    string
	bodies []*hclsyntax.Body
	src    map[string][]byte // by the file name in ranges
}

func parseModule(t *testing.T, dir string, files map[string]string) tfModule {
	t.Helper()
	m := tfModule{dir: dir, src: map[string][]byte{}}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		m.src[filepath.Join(dir, n)] = []byte(files[n])
		f, diags := hclsyntax.ParseConfig([]byte(files[n]), filepath.Join(dir, n), hcl.InitialPos)
		if diags.HasErrors() {
			t.Fatalf("parse %s: %v", filepath.Join(dir, n), diags)
		}
		m.bodies = append(m.bodies, f.Body.(*hclsyntax.Body))
	}
	return m
}

// loadTerraform parses every module directory under terraform/.
func loadTerraform(t *testing.T) []tfModule {
	t.Helper()
	byDir := map[string]map[string]string{}
	root := filepath.Join(repoRoot, "terraform")
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".terraform") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, ".tf") {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(repoRoot, filepath.Dir(p))
			if byDir[rel] == nil {
				byDir[rel] = map[string]string{}
			}
			byDir[rel][filepath.Base(p)] = string(b)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk terraform/: %v", err)
	}
	var mods []tfModule
	for dir, files := range byDir {
		mods = append(mods, parseModule(t, dir, files))
	}
	slices.SortFunc(mods, func(a, b tfModule) int { return strings.Compare(a.dir, b.dir) })
	if len(mods) < 4 {
		t.Fatalf("terraform/: %d module directories, want the module, its plan submodule and two examples", len(mods))
	}
	return mods
}

func (m tfModule) blocks(typ string, labels ...string) []*hclsyntax.Block {
	var out []*hclsyntax.Block
	for _, b := range m.bodies {
		for _, blk := range b.Blocks {
			if blk.Type == typ && (len(labels) == 0 || (len(blk.Labels) > 0 && blk.Labels[0] == labels[0])) {
				out = append(out, blk)
			}
		}
	}
	return out
}

// text returns the source text of r.
func (m tfModule) text(r hcl.Range) string {
	return string(r.SliceBytes(m.src[r.Filename]))
}

// local returns the expression of local.name in the module.
func (m tfModule) local(name string) hclsyntax.Expression {
	for _, blk := range m.blocks("locals") {
		if a, ok := blk.Body.Attributes[name]; ok {
			return a.Expr
		}
	}
	return nil
}

func where(blk *hclsyntax.Block) string {
	r := blk.DefRange()
	return r.Filename + ":" + itoa(r.Start.Line) + " " + blk.Type + " " + strings.Join(blk.Labels, ".")
}

// literal returns the constant value of e, if it has one.
func literal(e hclsyntax.Expression) (cty.Value, bool) {
	if len(e.Variables()) > 0 {
		return cty.NilVal, false
	}
	v, diags := e.Value(nil)
	if diags.HasErrors() || !v.IsWhollyKnown() {
		return cty.NilVal, false
	}
	return v, true
}

func literalBool(e hclsyntax.Expression, want bool) bool {
	v, ok := literal(e)
	return ok && v.Type() == cty.Bool && v.True() == want
}

func literalString(e hclsyntax.Expression) (string, bool) {
	v, ok := literal(e)
	if !ok || v.Type() != cty.String || v.IsNull() {
		return "", false
	}
	return v.AsString(), true
}

// strings collects every constant string inside e.
func stringsIn(e hclsyntax.Expression) []string {
	var out []string
	hclsyntax.VisitAll(e, func(n hclsyntax.Node) hcl.Diagnostics {
		switch x := n.(type) {
		case *hclsyntax.TemplateExpr:
			if s, ok := literalString(x); ok {
				out = append(out, s)
			}
		case *hclsyntax.LiteralValueExpr:
			if x.Val.Type() == cty.String && !x.Val.IsNull() {
				out = append(out, x.Val.AsString())
			}
		}
		return nil
	})
	return out
}

// objectKeys returns the constant keys of every object constructor in e.
func objectKeys(e hclsyntax.Expression) []string {
	var out []string
	hclsyntax.VisitAll(e, func(n hclsyntax.Node) hcl.Diagnostics {
		if o, ok := n.(*hclsyntax.ObjectConsExpr); ok {
			for _, it := range o.Items {
				if v, diags := it.KeyExpr.Value(nil); !diags.HasErrors() && v.Type() == cty.String {
					out = append(out, v.AsString())
				}
			}
		}
		return nil
	})
	return out
}

// objectAttr returns the value expression of key in object o.
func objectAttr(o *hclsyntax.ObjectConsExpr, key string) hclsyntax.Expression {
	for _, it := range o.Items {
		if v, diags := it.KeyExpr.Value(nil); !diags.HasErrors() && v.Type() == cty.String && v.AsString() == key {
			return it.ValueExpr
		}
	}
	return nil
}

// ---- rules ------------------------------------------------------------------

func checkVariablesAndOutputs(m tfModule) []string {
	var p []string
	for _, blk := range m.blocks("variable") {
		d, ok := blk.Body.Attributes["description"]
		if s, lit := literalString(exprOf(d, ok)); !ok || !lit || strings.TrimSpace(s) == "" {
			p = append(p, where(blk)+": no description")
		}
		if _, ok := blk.Body.Attributes["type"]; !ok {
			p = append(p, where(blk)+": no type")
		}
	}
	for _, blk := range m.blocks("output") {
		d, ok := blk.Body.Attributes["description"]
		if s, lit := literalString(exprOf(d, ok)); !ok || !lit || strings.TrimSpace(s) == "" {
			p = append(p, where(blk)+": no description")
		}
	}
	return p
}

func exprOf(a *hclsyntax.Attribute, ok bool) hclsyntax.Expression {
	if !ok {
		return &hclsyntax.LiteralValueExpr{Val: cty.NullVal(cty.String)}
	}
	return a.Expr
}

var tls13Only = regexp.MustCompile(`^ELBSecurityPolicy-TLS13-1-3-`)

// policyValues resolves an ssl_policy expression to the policies it can
// take: constants, conditionals over constants and locals; anything else
// (a variable, a function) cannot be proven TLS 1.3-only.
func policyValues(m tfModule, e hclsyntax.Expression, depth int) ([]string, bool) {
	if depth > 8 {
		return nil, false
	}
	switch x := e.(type) {
	case *hclsyntax.TemplateExpr, *hclsyntax.LiteralValueExpr:
		s, ok := literalString(x)
		return []string{s}, ok
	case *hclsyntax.ConditionalExpr:
		a, okA := policyValues(m, x.TrueResult, depth+1)
		b, okB := policyValues(m, x.FalseResult, depth+1)
		return append(a, b...), okA && okB
	case *hclsyntax.ScopeTraversalExpr:
		if x.Traversal.RootName() == "local" && len(x.Traversal) == 2 {
			if attr, ok := x.Traversal[1].(hcl.TraverseAttr); ok {
				if le := m.local(attr.Name); le != nil {
					return policyValues(m, le, depth+1)
				}
			}
		}
	case *hclsyntax.ParenthesesExpr:
		return policyValues(m, x.Expression, depth+1)
	}
	return nil, false
}

func checkListeners(m tfModule) []string {
	var p []string
	for _, blk := range m.blocks("resource", "aws_lb_listener") {
		proto := ""
		if a, ok := blk.Body.Attributes["protocol"]; ok {
			proto, _ = literalString(a.Expr)
		}
		if proto != "HTTPS" && proto != "TLS" {
			p = append(p, where(blk)+": protocol is not HTTPS or TLS: clients must get TLS 1.3")
			continue
		}
		a, ok := blk.Body.Attributes["ssl_policy"]
		if !ok {
			p = append(p, where(blk)+": no ssl_policy (the default policy allows TLS 1.2)")
			continue
		}
		vals, ok := policyValues(m, a.Expr, 0)
		if !ok || len(vals) == 0 {
			p = append(p, where(blk)+": ssl_policy is not a constant (or a choice of constants): cannot prove TLS 1.3 only")
		}
		for _, v := range vals {
			if !tls13Only.MatchString(v) {
				p = append(p, where(blk)+": ssl_policy "+v+" allows more than TLS 1.3")
			}
		}
	}
	for _, blk := range m.blocks("resource", "aws_lb") {
		if a, ok := blk.Body.Attributes["internal"]; !ok || !literalBool(a.Expr, true) {
			p = append(p, where(blk)+": load balancer is not internal = true")
		}
	}
	return p
}

func isOpen(s string) bool { return s == "0.0.0.0/0" || s == "::/0" }

func checkIngress(m tfModule) []string {
	var p []string
	cidrAttrs := []string{"cidr_blocks", "ipv6_cidr_blocks", "cidr_ipv4", "cidr_ipv6"}
	openIn := func(blk *hclsyntax.Block, body *hclsyntax.Body) {
		for _, name := range cidrAttrs {
			if a, ok := body.Attributes[name]; ok && slices.ContainsFunc(stringsIn(a.Expr), isOpen) {
				p = append(p, where(blk)+": ingress from "+name+" 0.0.0.0/0 or ::/0")
			}
		}
	}
	for _, blk := range m.blocks("resource", "aws_security_group") {
		for _, in := range blk.Body.Blocks {
			if in.Type == "ingress" {
				openIn(blk, in.Body)
			}
		}
		if a, ok := blk.Body.Attributes["ingress"]; ok && slices.ContainsFunc(stringsIn(a.Expr), isOpen) {
			p = append(p, where(blk)+": ingress attribute with 0.0.0.0/0 or ::/0")
		}
	}
	for _, blk := range m.blocks("resource", "aws_vpc_security_group_ingress_rule") {
		openIn(blk, blk.Body)
	}
	for _, blk := range m.blocks("resource", "aws_security_group_rule") {
		if a, ok := blk.Body.Attributes["type"]; ok {
			if s, _ := literalString(a.Expr); s == "ingress" {
				openIn(blk, blk.Body)
			}
		}
	}
	// Rule maps (the plan module): an object with direction = "ingress"
	// must not carry a /0 cidr.
	for _, b := range m.bodies {
		hclsyntax.VisitAll(b, func(n hclsyntax.Node) hcl.Diagnostics {
			o, ok := n.(*hclsyntax.ObjectConsExpr)
			if !ok {
				return nil
			}
			if d := objectAttr(o, "direction"); d != nil {
				if s, _ := literalString(d); s == "ingress" {
					if c := objectAttr(o, "cidr"); c != nil && slices.ContainsFunc(stringsIn(c), isOpen) {
						p = append(p, o.SrcRange.String()+": ingress rule with a /0 cidr")
					}
					// The edge trusts X-Forwarded-For from the private
					// subnets (CODEX_TRUSTED_PROXIES): only the load
					// balancer may reach it, or a task in those subnets
					// could name any client address.
					if sg := objectAttr(o, "security_group"); sg != nil {
						if s, _ := literalString(sg); s == "edge" {
							peer := ""
							if e := objectAttr(o, "peer"); e != nil {
								peer, _ = literalString(e)
							}
							if c := objectAttr(o, "cidr"); peer != "load_balancer" || (c != nil && len(stringsIn(c)) > 0) {
								p = append(p, o.SrcRange.String()+": ingress to the edge from other than the load balancer")
							}
						}
					}
				}
			}
			return nil
		})
	}
	// Client networks come from variables, which must refuse /0.
	for _, blk := range m.blocks("variable", "allowed_client_cidrs") {
		refuses := false
		for _, v := range blk.Body.Blocks {
			if v.Type == "validation" && slices.ContainsFunc(stringsIn(v.Body.Attributes["condition"].Expr), func(s string) bool { return strings.Contains(s, "/0") }) {
				refuses = true
			}
		}
		if !refuses {
			p = append(p, where(blk)+": no validation refusing /0 blocks")
		}
	}
	return p
}

func checkEncryption(m tfModule) []string {
	var p []string
	must := func(typ string, attrs map[string]bool) {
		for _, blk := range m.blocks("resource", typ) {
			for name, want := range attrs {
				if a, ok := blk.Body.Attributes[name]; !ok || !literalBool(a.Expr, want) {
					p = append(p, where(blk)+": "+name+" must be "+map[bool]string{true: "true", false: "false"}[want])
				}
			}
		}
	}
	must("aws_kms_key", map[string]bool{"enable_key_rotation": true})
	must("aws_db_instance", map[string]bool{"storage_encrypted": true, "publicly_accessible": false})
	must("aws_rds_cluster", map[string]bool{"storage_encrypted": true})
	must("aws_elasticache_replication_group", map[string]bool{"at_rest_encryption_enabled": true, "transit_encryption_enabled": true})
	for _, blk := range m.blocks("resource", "aws_elasticache_replication_group") {
		if _, ok := blk.Body.Attributes["auth_token"]; !ok {
			p = append(p, where(blk)+": no auth_token")
		}
	}
	for _, blk := range m.blocks("resource", "aws_kms_key") {
		if _, ok := blk.Body.Attributes["policy"]; !ok {
			p = append(p, where(blk)+": no key policy (the default lets every IAM principal of the account use it)")
		}
	}
	return p
}

// checkContainers: every ECS container definition (an object with image
// and essential) has a read-only root filesystem and a non-root user, except
// where a comment-free exception is impossible: the TLS init container runs
// as root to chown, and is checked for being non-essential instead.
func checkContainers(m tfModule) []string {
	var p []string
	for _, b := range m.bodies {
		hclsyntax.VisitAll(b, func(n hclsyntax.Node) hcl.Diagnostics {
			o, ok := n.(*hclsyntax.ObjectConsExpr)
			if !ok || objectAttr(o, "image") == nil || objectAttr(o, "essential") == nil {
				return nil
			}
			at := o.SrcRange.String()
			if ro := objectAttr(o, "readonlyRootFilesystem"); ro == nil || !literalBool(ro, true) {
				p = append(p, at+": container without readonlyRootFilesystem = true")
			}
			user := objectAttr(o, "user")
			if user == nil {
				p = append(p, at+": container without user (it would run as root)")
				return nil
			}
			if s, ok := literalString(user); ok && (s == "0" || s == "root" || strings.HasPrefix(s, "0:")) {
				if !literalBool(objectAttr(o, "essential"), false) {
					p = append(p, at+": an essential container runs as root")
				}
			}
			return nil
		})
	}
	return p
}

func checkProviderPins(m tfModule) []string {
	var p []string
	for _, tb := range m.blocks("terraform") {
		for _, rp := range tb.Body.Blocks {
			if rp.Type != "required_providers" {
				continue
			}
			for name, a := range rp.Body.Attributes {
				o, ok := a.Expr.(*hclsyntax.ObjectConsExpr)
				if !ok {
					p = append(p, where(rp)+": "+name+" is not {source, version}")
					continue
				}
				v := objectAttr(o, "version")
				s, _ := literalString(exprOrNull(v))
				if !strings.Contains(s, ">=") || !strings.Contains(s, "<") {
					p = append(p, where(rp)+": "+name+" version "+s+" is not a range with a lower and an upper bound")
				}
			}
		}
	}
	return p
}

func exprOrNull(e hclsyntax.Expression) hclsyntax.Expression {
	if e == nil {
		return &hclsyntax.LiteralValueExpr{Val: cty.NullVal(cty.String)}
	}
	return e
}

var envName = regexp.MustCompile(`^(CODEX_[A-Z0-9_]+|AWS_ENDPOINT_URL[A-Z0-9_]*)$`)

// settingsIn returns the CODEX_* names a module sets: object keys and
// constant strings that look like variable names.
func settingsIn(m tfModule) []string {
	var out []string
	for _, b := range m.bodies {
		for _, blk := range b.Blocks {
			hclsyntax.VisitAll(blk.Body, func(n hclsyntax.Node) hcl.Diagnostics {
				if e, ok := n.(hclsyntax.Expression); ok {
					if _, isObj := e.(*hclsyntax.ObjectConsExpr); isObj {
						for _, k := range objectKeys(e) {
							if envName.MatchString(k) {
								out = append(out, k)
							}
						}
					}
					if _, isT := e.(*hclsyntax.TemplateExpr); isT {
						if s, ok := literalString(e); ok && envName.MatchString(s) {
							out = append(out, s)
						}
					}
				}
				return nil
			})
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// ---- tests ------------------------------------------------------------------

func TestTerraform(t *testing.T) {
	mods := loadTerraform(t)
	for _, m := range mods {
		t.Run(strings.ReplaceAll(m.dir, "/", "_"), func(t *testing.T) {
			var p []string
			p = append(p, checkVariablesAndOutputs(m)...)
			p = append(p, checkListeners(m)...)
			p = append(p, checkIngress(m)...)
			p = append(p, checkEncryption(m)...)
			p = append(p, checkContainers(m)...)
			p = append(p, checkProviderPins(m)...)
			for _, s := range p {
				t.Error(s)
			}
			if un := Unread(Edge, settingsIn(m)); len(un) > 0 {
				t.Errorf("%s sets variables codex-edge does not read: %v", m.dir, un)
			}
		})
	}
}

// The pieces the rules above look at must exist, or the rules prove
// nothing.
func TestTerraformModuleHasTheResources(t *testing.T) {
	var edge tfModule
	for _, m := range loadTerraform(t) {
		if m.dir == filepath.Join("terraform", "modules", "edge") {
			edge = m
		}
	}
	for _, typ := range []string{
		"aws_lb", "aws_lb_listener", "aws_kms_key", "aws_db_instance", "aws_elasticache_replication_group",
		"aws_ecs_service", "aws_ecs_task_definition", "aws_cloudwatch_log_group", "aws_iam_role",
		"aws_security_group", "aws_vpc_security_group_ingress_rule", "aws_secretsmanager_secret",
	} {
		if len(edge.blocks("resource", typ)) == 0 {
			t.Errorf("terraform/modules/edge: no %s", typ)
		}
	}
	for _, v := range []string{"share_metrics", "enrollment_token_secret_arn", "byok_key_secret_arn", "create_database", "create_redis", "allowed_client_cidrs"} {
		if len(edge.blocks("variable", v)) == 0 {
			t.Errorf("terraform/modules/edge: no variable %s", v)
		}
	}
	for _, blk := range edge.blocks("variable", "share_metrics") {
		if a, ok := blk.Body.Attributes["default"]; !ok || !literalBool(a.Expr, false) {
			t.Error("share_metrics must default to false")
		}
	}
}

// The edge task's environment is assembled in the plan module: it must
// carry every DESIGN §8 variable of the edge (plain or secret).
func TestTerraformEdgeEnvironment(t *testing.T) {
	var plan tfModule
	for _, m := range loadTerraform(t) {
		if m.dir == filepath.Join("terraform", "modules", "edge", "modules", "plan") {
			plan = m
		}
	}
	var names []string
	for _, l := range []string{"module_environment", "secrets_wanted"} {
		e := plan.local(l)
		if e == nil {
			t.Fatalf("plan module: no local %s", l)
		}
		names = append(names, objectKeys(e)...)
	}
	for _, want := range Design8[Edge] {
		if !slices.Contains(names, want) {
			t.Errorf("the edge task's environment lacks %s (DESIGN §8)", want)
		}
	}
	if slices.Contains(objectKeys(plan.local("module_environment")), "CODEX_DATABASE_URL") {
		t.Error("CODEX_DATABASE_URL is a plain environment value: it carries a password, make it a secret")
	}
}

func TestTerraformRulesFindProblems(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"variable without description", `variable "x" { type = string }`, "no description"},
		{"variable without type", `variable "x" { description = "d" }`, "no type"},
		{"output without description", `output "x" { value = 1 }`, "no description"},
		{"tls 1.2 policy", `resource "aws_lb_listener" "l" {
  protocol   = "HTTPS"
  ssl_policy = "ELBSecurityPolicy-TLS13-1-2-2021-06"
}`, "allows more than TLS 1.3"},
		{"policy from a variable", `resource "aws_lb_listener" "l" {
  protocol   = "HTTPS"
  ssl_policy = var.policy
}`, "cannot prove"},
		{"policy through a local", `locals { p = true ? "ELBSecurityPolicy-TLS13-1-3-2021-06" : "ELBSecurityPolicy-2016-08" }
resource "aws_lb_listener" "l" {
  protocol   = "HTTPS"
  ssl_policy = local.p
}`, "ELBSecurityPolicy-2016-08 allows more"},
		{"plain http listener", `resource "aws_lb_listener" "l" { protocol = "HTTP" }`, "not HTTPS"},
		{"public lb", `resource "aws_lb" "l" { internal = false }`, "not internal"},
		{"open inline ingress", `resource "aws_security_group" "s" {
  ingress {
    cidr_blocks = ["10.0.0.0/8", "0.0.0.0/0"]
  }
}`, "0.0.0.0/0"},
		{"open ingress rule", `resource "aws_vpc_security_group_ingress_rule" "r" { cidr_ipv6 = "::/0" }`, "::/0"},
		{"open legacy rule", `resource "aws_security_group_rule" "r" {
  type        = "ingress"
  cidr_blocks = ["0.0.0.0/0"]
}`, "0.0.0.0/0"},
		{"open rule map", `locals { r = { a = { direction = "ingress", cidr = "0.0.0.0/0" } } }`, "/0 cidr"},
		{"edge reached by a cidr", `locals { r = { a = { security_group = "edge", direction = "ingress", cidr = "10.0.0.0/8", peer = null } } }`, "other than the load balancer"},
		{"edge reached by another group", `locals { r = { a = { security_group = "edge", direction = "ingress", cidr = null, peer = "redis" } } }`, "other than the load balancer"},
		{"client cidrs unvalidated", `variable "allowed_client_cidrs" {
  description = "d"
  type        = list(string)
}`, "refusing /0"},
		{"no rotation", `resource "aws_kms_key" "k" {
  enable_key_rotation = false
  policy              = "{}"
}`, "enable_key_rotation must be true"},
		{"no key policy", `resource "aws_kms_key" "k" { enable_key_rotation = true }`, "no key policy"},
		{"unencrypted rds", `resource "aws_db_instance" "d" {
  storage_encrypted   = false
  publicly_accessible = false
}`, "storage_encrypted"},
		{"public rds", `resource "aws_db_instance" "d" {
  storage_encrypted   = true
  publicly_accessible = true
}`, "publicly_accessible"},
		{"redis without tls", `resource "aws_elasticache_replication_group" "r" {
  at_rest_encryption_enabled = true
  auth_token                 = "x"
}`, "transit_encryption_enabled"},
		{"redis without auth", `resource "aws_elasticache_replication_group" "r" {
  at_rest_encryption_enabled = true
  transit_encryption_enabled = true
}`, "no auth_token"},
		{"writable container", `locals { c = { image = "x", essential = true, user = "65532" } }`, "readonlyRootFilesystem"},
		{"root container", `locals { c = { image = "x", essential = true, user = "0", readonlyRootFilesystem = true } }`, "runs as root"},
		{"unbounded provider", `terraform {
  required_providers {
    aws = { source = "hashicorp/aws", version = ">= 5.0" }
  }
}`, "upper bound"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := parseModule(t, "fixture", map[string]string{"main.tf": tt.src})
			var p []string
			p = append(p, checkVariablesAndOutputs(m)...)
			p = append(p, checkListeners(m)...)
			p = append(p, checkIngress(m)...)
			p = append(p, checkEncryption(m)...)
			p = append(p, checkContainers(m)...)
			p = append(p, checkProviderPins(m)...)
			got := strings.Join(p, "\n")
			if !strings.Contains(got, tt.want) {
				t.Fatalf("problems %q do not mention %q", got, tt.want)
			}
		})
	}
	// A module setting a variable the edge does not read.
	m := parseModule(t, "fixture", map[string]string{"main.tf": `locals { env = { CODEX_LISTEN = "x", CODEX_LISTN = "y" } }`})
	if un := Unread(Edge, settingsIn(m)); !slices.Equal(un, []string{"CODEX_LISTN"}) {
		t.Errorf("Unread = %v, want [CODEX_LISTN]", un)
	}
}
