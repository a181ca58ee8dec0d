package render_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/render"
)

// FuzzLoadRender feeds catalog sources through catalog.Parse and Render:
// whatever loads must render or fail with an error, never panic, every
// compose file rendered must load in compose-go's loader, and Render's own
// check must not reject what that loader accepts. Relative source folders
// resolve against the repository, whose sample services have Dockerfiles.
func FuzzLoadRender(f *testing.F) {
	root := repoRoot(f)
	repo, err := os.ReadFile(filepath.Join(root, "services.toml"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(repo)
	f.Add([]byte(strings.Replace(string(repo), "[environments.demo]", "[environments.demo]\nengine = \"swarm\"", 1)))
	f.Add([]byte(`[project]
name = "p"
[[services]]
name = "a"
image = "busybox:1"
port = 80
dev_port = 8080
env = { A = "$x ${y} $$ #z 'q' \"d\" \\ yes", B = "line\nbreak", C = "  " }
secrets = { S = "it's \"fine\" \\ here", T = "$dollar only" }
`))
	f.Add([]byte(`[project]
name = "p"
network = "net"
[environments.swarm]
ports = "prod"
engine = "swarm"
bind = "::1"
[[infrastructure]]
name = "db"
image = "db:1"
port = 5432
volumes = ["data:/var/lib/data", "logs:/logs:ro"]
healthcheck = ["/bin/check", "--deep"]
[[services]]
name = "null"
image = "x"
port = 1
dev_port = 2
prod_port = 3
replicas = 3
depends_on = ["db"]
[[services.checks]]
name = "body's \"check\""
path = "/a b?c=$d"
contains = "it's\nmulti"
`))
	f.Add([]byte(`[project]
name = "p"
[[services]]
name = "infrastructure"
image = "x"
port = 1
`))
	f.Add([]byte(`[project]
name = "p"
[[services]]
name = "a"
image = "x"
port = 1
secrets = { K = "${X}" }
`))
	f.Fuzz(func(t *testing.T, src []byte) {
		cat, err := catalog.Parse("fuzz.toml", filepath.Join(root, "services.toml"), src)
		if err != nil {
			return
		}
		names := make([]string, 0, len(cat.Environments))
		for n := range cat.Environments {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			for _, build := range []bool{false, true} {
				opts := render.Options{Build: build, Release: "r1"}
				tree, err := render.Render(cat, cat.Environments[n], opts)
				if err != nil {
					if tree != nil {
						t.Fatalf("%s: error with files: %v", n, err)
					}
					if strings.Contains(err.Error(), "compose-go rejects") {
						// Render's check must not be stricter than the
						// loader it stands in for.
						opts.DeferValidation = true
						if tree, derr := render.Render(cat, cat.Environments[n], opts); derr == nil && loadAll(cat.Project.Name, tree) == nil {
							t.Fatalf("%s: render rejects what compose-go's loader accepts: %v", n, err)
						}
					}
					continue
				}
				checkComposeGo(t, cat.Project.Name, tree)
			}
		}
	})
}

// checkComposeGo loads every compose file of tree with its .env, as compose
// v2 would, independently of Render's own check.
func checkComposeGo(t *testing.T, project string, tree render.Tree) {
	t.Helper()
	for _, f := range tree {
		base := filepath.Base(f.Path)
		if base != render.ComposeFile && base != render.StackFile {
			continue
		}
		if err := loadFull(project, tree, f.Path, f.Data); err != nil {
			t.Fatalf("%v\n%s", err, f.Data)
		}
	}
}

// loadAll loads every compose file of tree with loadFull.
func loadAll(project string, tree render.Tree) error {
	for _, f := range tree {
		if base := filepath.Base(f.Path); base == render.ComposeFile || base == render.StackFile {
			if err := loadFull(project, tree, f.Path, f.Data); err != nil {
				return err
			}
		}
	}
	return nil
}

// loadFull loads data as the compose file at path of tree, with the .env
// beside it, through compose-go's whole loader with its default options:
// the reference that Render's own, cheaper check is held to.
func loadFull(project string, tree render.Tree, path string, data []byte) error {
	envFile, ok := tree.File(strings.TrimPrefix(filepath.Dir(path)+"/", "./") + render.EnvFile)
	if !ok {
		return fmt.Errorf("%s has no .env beside it", path)
	}
	env, err := dotenv.ParseWithLookup(bytes.NewReader(envFile.Data), nil)
	if err != nil {
		return fmt.Errorf("%s: %w", envFile.Path, err)
	}
	_, err = loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  "/",
		ConfigFiles: []types.ConfigFile{{Filename: path, Content: data}},
		Environment: env,
	}, func(o *loader.Options) { o.SetProjectName(project, true) })
	if err != nil {
		return fmt.Errorf("%s rejected by compose-go: %w", path, err)
	}
	return nil
}

// benchCatalog is a generated catalog of n services, each with a source
// folder, environment, a secret, a healthcheck, a volume and a dependency.
func benchCatalog(n int) (*catalog.Catalog, *catalog.Environment) {
	cat := &catalog.Catalog{File: "/src/services.toml",
		Project:      catalog.Project{Name: "bench", Network: "platform", DeployDir: "/tmp/bench"},
		Environments: map[string]*catalog.Environment{}}
	env := &catalog.Environment{Name: "dev", Ports: "dev", Bind: "127.0.0.1", Engine: catalog.EngineCompose, HealthTimeout: time.Minute}
	cat.Environments["dev"] = env
	for i := range n {
		s := &catalog.Service{
			Name: fmt.Sprintf("svc-%d", i), Source: fmt.Sprintf("/src/services/svc-%d", i),
			Port: 8080, DevPort: 20000 + i, Replicas: 1,
			Healthcheck: []string{"/app", "-healthcheck"},
			Written: catalog.Written{Dockerfile: "Dockerfile", Health: "/health",
				Env: map[string]string{"SERVICE_NAME": fmt.Sprintf("svc-%d", i), "PORT": "8080", "LOG_LEVEL": "info",
					"UPSTREAMS": "svc-0=http://svc-0:8080"},
				Prebuild: []string{"go", "build", "-o", "app", "."}},
			Secrets: map[string]string{"TOKEN": "t0k3n"},
			Volumes: []catalog.Volume{{Spec: fmt.Sprintf("data-%d:/data", i)}},
			Checks:  []*catalog.Check{{Name: "health", Kind: catalog.CheckHTTP, Path: "/health", Status: 200, Timeout: 2 * time.Second, Retries: 2}},
		}
		if i > 0 {
			s.DependsOn = []string{"svc-0"}
		}
		cat.Services = append(cat.Services, s)
	}
	return cat, env
}

// BenchmarkRender renders and checks every file: what a first render
// costs before the files are written.
func BenchmarkRender(b *testing.B) { benchRender(b, render.Options{Build: true}) }

// BenchmarkRenderDeferred renders as tasks/stack does, leaving the checks
// to Write, which makes them only for the files it changes.
func BenchmarkRenderDeferred(b *testing.B) {
	benchRender(b, render.Options{Build: true, DeferValidation: true})
}

func benchRender(b *testing.B, opts render.Options) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			cat, env := benchCatalog(n)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := render.Render(cat, env, opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRenderNoop is `mage render` when nothing changed: the sample
// catalog rendered, as tasks/stack does, and written onto a folder that is
// already up to date.
func BenchmarkRenderNoop(b *testing.B) {
	cat := loadRepo(b)
	env, err := cat.Env("dev")
	if err != nil {
		b.Fatal(err)
	}
	dir := filepath.Join(b.TempDir(), "deployment")
	write := func() *render.WriteResult {
		tree, err := render.Render(cat, env, render.Options{Build: true, DeferValidation: true})
		if err != nil {
			b.Fatal(err)
		}
		res, err := render.Write(dir, tree, render.WriteOptions{})
		if err != nil {
			b.Fatal(err)
		}
		return res
	}
	write()
	b.ReportAllocs()
	for b.Loop() {
		if res := write(); res.Changed() {
			b.Fatalf("noop write changed %v %v", res.Written, res.Removed)
		}
	}
}
