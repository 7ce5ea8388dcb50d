// Package terraform_test checks the Terraform in deploy/terraform offline: no terraform binary
// or provider registry is reachable here, so the files are parsed with hashicorp/hcl/v2 and
// checked for what `terraform validate` and reviewers would catch.
package terraform_test

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"
)

// module is one directory of .tf files.
type module struct {
	dir       string
	files     map[string]*hclsyntax.Body
	variables map[string]*hclsyntax.Block
	locals    map[string]bool
	modules   map[string]*hclsyntax.Block
}

func loadModule(t *testing.T, dir string) *module {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.tf"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("%s: no .tf files (%v)", dir, err)
	}
	m := &module{dir: dir, files: map[string]*hclsyntax.Body{}, variables: map[string]*hclsyntax.Block{},
		locals: map[string]bool{}, modules: map[string]*hclsyntax.Block{}}
	p := hclparse.NewParser()
	for _, path := range paths {
		f, diags := p.ParseHCLFile(path)
		if diags.HasErrors() {
			t.Fatalf("%s", diags.Error())
		}
		body := f.Body.(*hclsyntax.Body)
		m.files[path] = body
		for _, b := range body.Blocks {
			switch b.Type {
			case "variable":
				m.variables[b.Labels[0]] = b
			case "locals":
				for name := range b.Body.Attributes {
					m.locals[name] = true
				}
			case "module":
				m.modules[b.Labels[0]] = b
			}
		}
	}
	return m
}

func moduleDirs(t *testing.T) []string {
	t.Helper()
	var dirs []string
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if tf, _ := filepath.Glob(filepath.Join(path, "*.tf")); d.IsDir() && len(tf) > 0 {
			dirs = append(dirs, path)
		}
		return nil
	})
	if err != nil || len(dirs) < 5 {
		t.Fatalf("module directories %v (%v)", dirs, err)
	}
	return dirs
}

func TestFormatted(t *testing.T) {
	for _, dir := range moduleDirs(t) {
		paths, _ := filepath.Glob(filepath.Join(dir, "*.tf"))
		for _, path := range paths {
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := hclwrite.Format(src); !bytes.Equal(got, src) {
				t.Errorf("%s is not in canonical form (terraform fmt)", path)
			}
		}
	}
}

func TestVariablesAndOutputsDocumented(t *testing.T) {
	for _, dir := range moduleDirs(t) {
		m := loadModule(t, dir)
		for name, v := range m.variables {
			for _, attr := range []string{"type", "description"} {
				if _, ok := v.Body.Attributes[attr]; !ok {
					t.Errorf("%s: variable %q has no %s", dir, name, attr)
				}
			}
		}
		for path, body := range m.files {
			for _, b := range body.Blocks {
				if _, ok := b.Body.Attributes["description"]; b.Type == "output" && !ok {
					t.Errorf("%s: output %q has no description", path, b.Labels[0])
				}
			}
		}
	}
}

// Every var., local. and module. reference names something the module declares.
func TestReferencesResolve(t *testing.T) {
	for _, dir := range moduleDirs(t) {
		m := loadModule(t, dir)
		for path, body := range m.files {
			hclsyntax.VisitAll(body, func(n hclsyntax.Node) hcl.Diagnostics {
				e, ok := n.(hclsyntax.Expression)
				if !ok {
					return nil
				}
				for _, tr := range e.Variables() {
					checkReference(t, m, path, tr)
				}
				return nil
			})
		}
	}
}

func checkReference(t *testing.T, m *module, path string, tr hcl.Traversal) {
	t.Helper()
	if len(tr) < 2 {
		return
	}
	attr, ok := tr[1].(hcl.TraverseAttr)
	if !ok {
		return
	}
	var known bool
	switch tr.RootName() {
	case "var":
		_, known = m.variables[attr.Name]
	case "local":
		known = m.locals[attr.Name]
	case "module":
		_, known = m.modules[attr.Name]
	default:
		return
	}
	if !known {
		t.Errorf("%s:%d: %s.%s is not declared in %s", path, tr.SourceRange().Start.Line, tr.RootName(), attr.Name, m.dir)
	}
}

// A module call passes only inputs the module declares, and every input without a default.
func TestModuleInputs(t *testing.T) {
	meta := []string{"source", "count", "for_each", "depends_on", "providers", "version"}
	for _, dir := range moduleDirs(t) {
		for name, call := range loadModule(t, dir).modules {
			src, diags := call.Body.Attributes["source"].Expr.Value(nil)
			if diags.HasErrors() || src.Type() != cty.String {
				t.Fatalf("%s: module %q: source is not a literal string", dir, name)
			}
			target := loadModule(t, filepath.Join(dir, src.AsString()))
			for input := range call.Body.Attributes {
				if _, ok := target.variables[input]; !ok && !slices.Contains(meta, input) {
					t.Errorf("%s: module %q passes %q, which %s does not declare", dir, name, input, target.dir)
				}
			}
			for v, block := range target.variables {
				if _, hasDefault := block.Body.Attributes["default"]; !hasDefault {
					if _, given := call.Body.Attributes[v]; !given {
						t.Errorf("%s: module %q does not set required input %q", dir, name, v)
					}
				}
			}
		}
	}
}

// Gossip (7946 TCP and UDP) and NATS (4222, 6222) are open, and never to the whole internet.
func TestFleetPortsClosedToTheInternet(t *testing.T) {
	found := map[string]bool{}
	for _, dir := range moduleDirs(t) {
		for path, body := range loadModule(t, dir).files {
			for _, b := range body.Blocks {
				if b.Type != "resource" || b.Labels[0] != "aws_security_group_rule" {
					continue
				}
				kind, port, proto := literal(b, "type"), literal(b, "from_port"), literal(b, "protocol")
				if kind != "ingress" || !slices.Contains([]string{"7946", "4222", "6222"}, port) {
					continue
				}
				found[port+"/"+proto] = true
				if cidrs, ok := b.Body.Attributes["cidr_blocks"]; ok {
					t.Errorf("%s: %s rule for port %s takes cidr_blocks (%s); fleet ports must name a security group",
						path, b.Labels[1], port, string(cidrs.SrcRange.SliceBytes(mustRead(t, path))))
				}
				if _, ok := b.Body.Attributes["source_security_group_id"]; !ok {
					t.Errorf("%s: %s rule for port %s has no source security group", path, b.Labels[1], port)
				}
			}
		}
	}
	for _, want := range []string{"7946/tcp", "7946/udp", "4222/tcp", "6222/tcp"} {
		if !found[want] {
			t.Errorf("no ingress rule for %s", want)
		}
	}
}

// literal is the value of a constant attribute as a string ("" if not constant).
func literal(b *hclsyntax.Block, name string) string {
	a, ok := b.Body.Attributes[name]
	if !ok {
		return ""
	}
	v, diags := a.Expr.Value(nil)
	if diags.HasErrors() || v.IsNull() {
		return ""
	}
	switch v.Type() {
	case cty.String:
		return v.AsString()
	case cty.Number:
		return v.AsBigFloat().Text('f', -1)
	}
	return ""
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The worker's cloud-init, rendered with test values as templatefile would, installs the
// systemd unit from deploy/systemd and an environment that starts the worker with the right
// flags.
func TestWorkerCloudInitRenders(t *testing.T) {
	unit := string(mustRead(t, "../systemd/lorafleet-worker.service"))
	got := render(t, "modules/worker/templates/cloud-init.yaml.tftpl", map[string]cty.Value{
		"binary_url":           cty.StringVal("s3://artifacts/lorafleet-cuda"),
		"model_s3_uri":         cty.StringVal("s3://artifacts/models/llama-3.1-8b"),
		"model_name":           cty.StringVal("llama-3.1-8b"),
		"adapters_s3_uri":      cty.StringVal("s3://fleet-adapters-x"),
		"join":                 cty.StringVal("10.40.100.10:7946"),
		"nats_urls":            cty.StringVal("nats://10.40.100.10:4222,nats://10.40.101.11:4222"),
		"gossip_key_parameter": cty.StringVal("/fleet/gossip-key"),
		"backend":              cty.StringVal("cuda"),
		"worker_unit":          cty.StringVal(indent(6, unit)),
	})
	for _, want := range []string{
		"#cloud-config",
		"aws s3 cp \"s3://artifacts/lorafleet-cuda\" /usr/local/bin/lorafleet",
		"aws s3 sync \"s3://fleet-adapters-x\" /var/lib/lorafleet/adapters",
		"--name \"/fleet/gossip-key\"",
		"LORAFLEET_JOIN=10.40.100.10:7946",
		"LORAFLEET_NATS=nats://10.40.100.10:4222,nats://10.40.101.11:4222",
		"LORAFLEET_MODEL_NAME=llama-3.1-8b",
		"LORAFLEET_BACKEND=cuda",
		"LORAFLEET_NODE_NAME=worker-$IP",
		"ExecStart=/usr/local/bin/lorafleet worker --model ${LORAFLEET_MODEL_DIR} --adapters ${LORAFLEET_ADAPTERS_DIR}",
		"--join ${LORAFLEET_JOIN} --nats ${LORAFLEET_NATS}",
		"--node-name ${LORAFLEET_NODE_NAME}",
		"--backend ${LORAFLEET_BACKEND}",
		"systemctl enable --now lorafleet-worker.service",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("rendered cloud-init lacks %q:\n%s", want, got)
		}
	}
	// Every variable the unit reads is written to the environment file.
	for _, v := range []string{"LORAFLEET_MODEL_DIR", "LORAFLEET_ADAPTERS_DIR", "LORAFLEET_ADVERTISE", "LORAFLEET_CLUSTER", "LORAFLEET_GOSSIP_KEY"} {
		if !strings.Contains(got, v+"=") {
			t.Errorf("the environment file does not set %s", v)
		}
	}
}

func TestRouterAndNATSCloudInitRender(t *testing.T) {
	router := render(t, "modules/router/cloud-init.yaml.tftpl", map[string]cty.Value{
		"binary_url": cty.StringVal("https://example.com/lorafleet"), "join": cty.StringVal("10.40.100.10:7946"),
		"nats_urls": cty.StringVal("nats://10.40.100.10:4222"), "base_model": cty.StringVal("m"),
		"gossip_key_parameter": cty.StringVal("/k"), "router_unit": cty.StringVal(indent(6, string(mustRead(t, "../systemd/lorafleet-router.service")))),
	})
	for _, want := range []string{"LORAFLEET_BASE_MODEL=m", "ExecStart=/usr/local/bin/lorafleet router --listen 0.0.0.0:8080", "curl -fsSL -o /usr/local/bin/lorafleet \"https://example.com/lorafleet\""} {
		if !strings.Contains(router, want) {
			t.Errorf("router cloud-init lacks %q:\n%s", want, router)
		}
	}
	nats := render(t, "modules/nats/cloud-init.yaml.tftpl", map[string]cty.Value{
		"name": cty.StringVal("f-nats-0"), "routes": cty.StringVal("nats-route://10.0.0.1:6222, nats-route://10.0.0.2:6222"),
		"nats_version": cty.StringVal("2.15.2"), "binary_url": cty.StringVal("s3://a/b"), "key_param": cty.StringVal("/k"),
		"seeds":     cty.ListVal([]cty.Value{cty.StringVal("10.0.0.1"), cty.StringVal("10.0.0.2")}),
		"nats_unit": cty.StringVal(indent(6, string(mustRead(t, "../systemd/lorafleet-nats.service")))),
	})
	for _, want := range []string{"routes: [ nats-route://10.0.0.1:6222, nats-route://10.0.0.2:6222 ]", "--join 10.0.0.1:7946 --join 10.0.0.2:7946", "server_name: f-nats-0", "--setenv=LORAFLEET_GOSSIP_KEY=\"$KEY\""} {
		if !strings.Contains(nats, want) {
			t.Errorf("nats cloud-init lacks %q:\n%s", want, nats)
		}
	}
}

// render evaluates a templatefile template with the given variables.
func render(t *testing.T, path string, vars map[string]cty.Value) string {
	t.Helper()
	expr, diags := hclsyntax.ParseTemplate(mustRead(t, path), path, hcl.Pos{Line: 1, Column: 1})
	if diags.HasErrors() {
		t.Fatalf("%s", diags.Error())
	}
	v, diags := expr.Value(&hcl.EvalContext{Variables: vars})
	if diags.HasErrors() {
		t.Fatalf("%s", diags.Error())
	}
	return v.AsString()
}

// indent is Terraform's indent(): every line but the first gets n spaces.
func indent(n int, s string) string {
	return strings.ReplaceAll(s, "\n", "\n"+strings.Repeat(" ", n))
}
