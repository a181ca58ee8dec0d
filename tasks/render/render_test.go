package render_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/maestro-platform/deploy/internal/testenv"
	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/render"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// fakeRoot stands in for the repository folder in goldens, so that they do
// not depend on where the repository is checked out.
const fakeRoot = "/src/maestro"

func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func loadRepo(t testing.TB) *catalog.Catalog {
	t.Helper()
	cat, err := catalog.Load(filepath.Join(repoRoot(t), "testdata", "services.toml"))
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

func mustRender(t testing.TB, cat *catalog.Catalog, env string, opts render.Options) render.Tree {
	t.Helper()
	e, err := cat.Env(env)
	if err != nil {
		t.Fatal(err)
	}
	if e.Remote() {
		// Stands in for secrets.Resolve, with values from outside the
		// catalog equal to its literals, so that the goldens keep them.
		// TestSecretsGuard checks what render does without it.
		defer func(was string) { cat.SecretsEnv = was }(cat.SecretsEnv)
		cat.SecretsEnv = e.Name
	}
	tree, err := render.Render(cat, e, opts)
	if err != nil {
		t.Fatalf("render %s: %v", env, err)
	}
	return tree
}

// snapshot is every entry under dir: path -> mode and content.
func snapshot(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		v := fi.Mode().String()
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			v += " " + string(b)
		}
		out[rel] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameSnapshot(t *testing.T, what string, a, b map[string]string) {
	t.Helper()
	var diffs []string
	for k, v := range a {
		if w, ok := b[k]; !ok {
			diffs = append(diffs, "gone: "+k)
		} else if v != w {
			diffs = append(diffs, "changed: "+k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			diffs = append(diffs, "new: "+k)
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 0 {
		t.Fatalf("%s: folder changed: %s", what, strings.Join(diffs, "; "))
	}
}

func TestGolden(t *testing.T) {
	root := repoRoot(t)
	// swarm is demo on a swarm engine: it adds the stack file. swarm-dnsrr
	// is the swarm that needs no IPVS: DNS round robin, ports bound in host
	// mode, and two replicas of the unpublished state-store.
	for _, golden := range []string{"dev", "demo", "swarm", "swarm-dnsrr"} {
		t.Run(golden, func(t *testing.T) {
			cat := loadRepo(t)
			for _, s := range cat.All() {
				s.Source = strings.Replace(s.Source, root, fakeRoot, 1)
			}
			env := golden
			if strings.HasPrefix(golden, "swarm") {
				env = "demo"
				cat.Environments[env].Engine = catalog.EngineSwarm
			}
			if golden == "swarm-dnsrr" {
				dnsrr(t, cat)
			}
			tree := mustRender(t, cat, env, render.Options{Build: env == "dev"})
			dir := filepath.Join("testdata", "golden", golden)
			if *update {
				if err := os.RemoveAll(dir); err != nil {
					t.Fatal(err)
				}
				for _, f := range tree {
					p := filepath.Join(dir, filepath.FromSlash(f.Path))
					if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(p, f.Data, 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			want := map[string][]byte{}
			err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				rel, _ := filepath.Rel(dir, p)
				b, err := os.ReadFile(p)
				want[filepath.ToSlash(rel)] = b
				return err
			})
			if err != nil {
				t.Fatalf("%v (run go test ./tasks/render -update to create the goldens)", err)
			}
			for _, f := range tree {
				w, ok := want[f.Path]
				if !ok {
					t.Errorf("%s rendered but not in the goldens (review it, then -update)", f.Path)
					continue
				}
				if !bytes.Equal(w, f.Data) {
					t.Errorf("%s differs from its golden (review, then -update):\n%s", f.Path, firstDiff(string(w), string(f.Data)))
				}
				delete(want, f.Path)
			}
			for p := range want {
				t.Errorf("golden %s is no longer rendered", p)
			}
		})
	}
}

// dnsrr makes demo the swarm environment that needs no IPVS, with two
// replicas of state-store.
func dnsrr(t *testing.T, cat *catalog.Catalog) {
	t.Helper()
	demo := cat.Environments["demo"]
	demo.Engine, demo.EndpointMode, demo.PublishMode = catalog.EngineSwarm, catalog.EndpointDNSRR, catalog.PublishHost
	ss, ok := cat.Service("state-store")
	if !ok {
		t.Fatal("services.toml has no state-store")
	}
	ss.Replicas = 2
}

func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < len(al) || i < len(bl); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return fmt.Sprintf("line %d:\n  golden:   %q\n  rendered: %q", i+1, x, y)
		}
	}
	return ""
}

func TestBuildSectionsAndModes(t *testing.T) {
	cat := loadRepo(t)
	dev := mustRender(t, cat, "dev", render.Options{Build: true})
	demo := mustRender(t, cat, "demo", render.Options{Images: map[string]string{"quality-fabric": "maestro/quality-fabric:r42"}, Release: "r42"})
	for _, s := range cat.All() {
		f := composeOf(t, dev, s)
		want := fmt.Sprintf("    build:\n      context: %q\n      dockerfile: \"Dockerfile\"\n", s.Source)
		if !strings.Contains(string(f.Data), want) {
			t.Errorf("%s: no build section for %s with its absolute source:\n%s", f.Path, s.Name, f.Data)
		}
		if g := composeOf(t, demo, s); strings.Contains(string(g.Data), "build:") {
			t.Errorf("demo %s has a build section", g.Path)
		}
	}
	qf, _ := demo.File("quality-fabric/docker-compose.yml")
	if !strings.Contains(string(qf.Data), `image: "maestro/quality-fabric:r42"`) {
		t.Errorf("pinned image missing:\n%s", qf.Data)
	}
	// The release is recorded in .env, never in a service's configuration:
	// a label there would make every release replace every container.
	if strings.Contains(string(qf.Data), `: "r42"`) {
		t.Errorf("the release id is in the service's configuration:\n%s", qf.Data)
	}
	if env, _ := demo.File("quality-fabric/.env"); !strings.Contains(string(env.Data), "DEPLOY_RELEASE=") || !strings.Contains(string(env.Data), "r42") {
		t.Errorf("the release id is not in .env:\n%s", env.Data)
	}
	for _, tree := range []render.Tree{dev, demo} {
		for _, f := range tree {
			var want fs.FileMode = 0o644
			switch filepath.Base(f.Path) {
			case ".env", ".manifest":
				want = 0o600
			case "deploy-all.sh", "test-all.sh":
				want = 0o755
			}
			if f.Mode != want {
				t.Errorf("%s mode %v, want %v", f.Path, f.Mode, want)
			}
		}
	}
	if _, err := render.Render(cat, cat.Environments["dev"], render.Options{Images: map[string]string{"nope": "x"}}); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("pinning an image for an unknown service: %v", err)
	}
}

func composeOf(t *testing.T, tree render.Tree, s *catalog.Service) render.File {
	t.Helper()
	p := s.Name + "/docker-compose.yml"
	if s.Infra {
		p = "infrastructure/docker-compose.yml"
	}
	f, ok := tree.File(p)
	if !ok {
		t.Fatalf("%s not rendered", p)
	}
	return f
}

// composeCLIs are the compose command lines to check files with: v1 is
// required (it is what this machine runs), v2 is the one in
// MAESTRO_COMPOSE_V2 (.ci/run builds it) or the docker plugin, and is
// required under CI.
func composeCLIs(t *testing.T) [][]string {
	t.Helper()
	testenv.RequireCommand(t, "docker-compose")
	clis := [][]string{{"docker-compose"}}
	switch {
	case os.Getenv("MAESTRO_COMPOSE_V2") != "":
		clis = append(clis, []string{os.Getenv("MAESTRO_COMPOSE_V2")})
	case exec.Command("docker", "compose", "version").Run() == nil:
		clis = append(clis, []string{"docker", "compose"})
	case testenv.InCI():
		t.Fatal("compose v2 not found (CI=true: .ci/run builds it into MAESTRO_COMPOSE_V2)")
	}
	return clis
}

// cleanEnv is the process environment without COMPOSE_* and SECRET__*
// variables, which would override the rendered .env.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "COMPOSE_") || strings.HasPrefix(kv, "SECRET__") || strings.HasPrefix(kv, "DOCKER_HOST=") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

func runIn(t *testing.T, dir string, argv ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = cleanEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s in %s: %v\n%s", strings.Join(argv, " "), dir, err, stderr.String())
	}
	return out
}

func TestComposeCLIAcceptsEveryFile(t *testing.T) {
	clis := composeCLIs(t)
	cat := loadRepo(t)
	cat.Environments["demo"].Engine = catalog.EngineSwarm
	for _, env := range []string{"dev", "demo"} {
		dir := filepath.Join(t.TempDir(), "deployment")
		tree := mustRender(t, cat, env, render.Options{Build: env == "dev"})
		if _, err := render.Write(dir, tree, render.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, f := range tree {
			if filepath.Base(f.Path) != "docker-compose.yml" {
				continue
			}
			for _, cli := range clis {
				runIn(t, filepath.Join(dir, filepath.Dir(f.Path)), append(cli, "config", "-q")...)
			}
			n++
		}
		if n != 2+len(cat.Services) {
			t.Errorf("%s: %d compose files checked, want %d", env, n, 2+len(cat.Services))
		}
		if env == "demo" {
			if _, ok := tree.File("docker-stack.yml"); !ok {
				t.Fatal("swarm environment without docker-stack.yml")
			}
			if exec.Command("docker", "stack", "config", "--help").Run() == nil {
				runIn(t, dir, "docker", "stack", "config", "-c", "docker-stack.yml")
			}
		}
	}
}

// TestSwarmModes: the stack file of a swarm environment carries its
// endpoint and publish modes in a form both docker stack (legacy v3
// schema) and compose-go's loader accept; Render refuses combinations
// swarm would refuse at deploy time, for catalogs built in code.
func TestSwarmModes(t *testing.T) {
	cat := loadRepo(t)
	dnsrr(t, cat)
	tree := mustRender(t, cat, "demo", render.Options{})
	stack, ok := tree.File(render.StackFile)
	if !ok {
		t.Fatal("swarm environment without docker-stack.yml")
	}
	if err := loadFull(cat.Project.Name, tree, stack.Path, stack.Data); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(stack.Data), "endpoint_mode: dnsrr"); n != len(cat.All()) {
		t.Errorf("endpoint_mode: dnsrr on %d services, want all %d", n, len(cat.All()))
	}
	if n := strings.Count(string(stack.Data), "mode: host"); n != len(cat.Services) {
		t.Errorf("%d host-mode ports, want one per published service (%d)", n, len(cat.Services))
	}
	if exec.Command("docker", "stack", "config", "--help").Run() == nil {
		dir := filepath.Join(t.TempDir(), "deployment")
		if _, err := render.Write(dir, tree, render.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		out := string(runIn(t, dir, "docker", "stack", "config", "-c", render.StackFile))
		for _, want := range []string{"endpoint_mode: dnsrr", "mode: host", "published: 8005", "replicas: 2"} {
			if !strings.Contains(out, want) {
				t.Errorf("docker stack config output lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, "mode: ingress") {
			t.Errorf("docker stack config reads an ingress port:\n%s", out)
		}
	} else if testenv.InCI() {
		t.Fatal("docker stack config is not available (CI=true)")
	}

	// Unknown modes are catalog.Load's to refuse (testdata/bad/env-*-mode*).
	demo := cat.Environments["demo"]
	// Empty modes are swarm's defaults.
	demo.EndpointMode, demo.PublishMode = "", ""
	tree = mustRender(t, cat, "demo", render.Options{})
	stack, _ = tree.File(render.StackFile)
	if !strings.Contains(string(stack.Data), "endpoint_mode: vip") || strings.Contains(string(stack.Data), "mode: host") {
		t.Errorf("empty modes did not render vip with ingress ports:\n%s", stack.Data)
	}
}

// Render writes only an environment's own secrets: never the catalog's dev
// defaults on a remote environment, never values resolved for another
// environment, and never a service without a value for a secret it
// declares. Errors name the secret, never a value.
func TestSecretsGuard(t *testing.T) {
	cat := loadRepo(t)
	demo, _ := cat.Env("demo")
	dev, _ := cat.Env("dev")
	gw, _ := cat.Service("maestro-gateway")
	const value = "v4lue-never-in-an-error"
	gw.Secrets["GATEWAY_API_TOKEN"] = value

	refused := func(env *catalog.Environment, want string) {
		t.Helper()
		tree, err := render.Render(cat, env, render.Options{})
		if err == nil || tree != nil || !strings.Contains(err.Error(), want) {
			t.Errorf("render %s with SecretsEnv %q: %v, want an error with %q and no files", env.Name, cat.SecretsEnv, err, want)
		}
		if err != nil && (strings.Contains(err.Error(), value) || strings.Contains(err.Error(), "change-me-dev-token")) {
			t.Errorf("the error shows a value: %v", err)
		}
	}
	refused(demo, "the catalog's dev defaults are never used for a remote environment")
	cat.SecretsEnv = "demo"
	refused(dev, "resolved for environment demo, not for dev")
	if _, err := render.Render(cat, demo, render.Options{}); err != nil {
		t.Errorf("render demo with its own secrets: %v", err)
	}
	cat.SecretsEnv = ""
	if _, err := render.Render(cat, dev, render.Options{}); err != nil {
		t.Errorf("render dev with the dev defaults: %v", err)
	}
	delete(gw.Secrets, "GATEWAY_API_TOKEN")
	refused(dev, "service maestro-gateway: secret GATEWAY_API_TOKEN has no value")
}

// The rendered scripts pass shellcheck at warning level. The goldens are
// what render writes (TestGolden), so checking them checks every case.
func TestScriptsPassShellcheck(t *testing.T) {
	sc := testenv.RequireCommand(t, "shellcheck")
	for _, golden := range []string{"dev", "demo", "swarm", "swarm-dnsrr"} {
		for _, script := range []string{render.DeployScript, render.TestScript} {
			p := filepath.Join("testdata", "golden", golden, script)
			if out, err := exec.Command(sc, "-S", "warning", p).CombinedOutput(); err != nil {
				t.Errorf("shellcheck -S warning %s: %v\n%s", p, err, out)
			}
		}
	}
}

// A release's files tell the truth about themselves on the host: promote
// shipped them and nothing renders them there, and its deploy-all.sh
// builds nothing.
func TestReleaseFilesSayWhatTheyAre(t *testing.T) {
	cat := loadRepo(t)
	tree := mustRender(t, cat, "demo", render.Options{Release: "20261127T181500Z-1a2b3c4", Proxied: true})
	for _, f := range tree {
		if strings.Contains(string(f.Data), "mage render") {
			t.Errorf("%s of a release says `mage render` rewrites it", f.Path)
		}
		if f.Path == render.EnvFile && !strings.Contains(string(f.Data), "as `mage promote` shipped it") {
			t.Errorf("%s of a release does not say promote shipped it:\n%s", f.Path, f.Data)
		}
		if f.Path == render.DeployScript && (strings.Contains(string(f.Data), "# Builds") || !strings.Contains(string(f.Data), "it builds\n# nothing")) {
			t.Errorf("%s of a release says it builds:\n%.900s", f.Path, f.Data)
		}
	}
}

// A service may not take the name of the deployment's infrastructure/
// folder: its own folder would be that one. The catalog cannot know the
// layout; render refuses it, before writing anything.
func TestServiceNamedAfterInfraFolder(t *testing.T) {
	cat := loadRepo(t)
	cat.Services[0].Name = render.InfraDir
	_, err := render.Render(cat, cat.Environments["dev"], render.Options{})
	if err == nil || !strings.Contains(err.Error(), "service infrastructure: the name is taken by the infrastructure/ folder") {
		t.Fatalf("Render: %v, want the name refused", err)
	}
}
