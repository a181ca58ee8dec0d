package render_test

import (
	"maps"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/maestro-platform/deploy/internal/testenv"
	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/render"
)

func loadPassthrough(t *testing.T) *catalog.Catalog {
	t.Helper()
	cat, err := catalog.Load(filepath.Join("testdata", "passthrough", "services.toml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range cat.All() {
		if len(s.SecretNames) > 0 {
			s.Secrets = map[string]string{"API_TOKEN": "t0ken-never-in-a-compose-file"}
		}
	}
	return cat
}

// TestPassthroughRendered: the keys the catalog carries as written reach
// every compose and stack file holding the service, unchanged and read
// alike by compose v1, v2 and docker stack; '$' stays literal; demo's
// compose_env replaces its key there only; .env.example leaves the secret
// blank.
func TestPassthroughRendered(t *testing.T) {
	clis := composeCLIs(t)
	cat := loadPassthrough(t)
	for _, env := range []string{"dev", "demo", "cluster"} {
		cat.SecretsEnv = env
		if env == "dev" {
			cat.SecretsEnv = ""
		}
		tree := mustRender(t, cat, env, render.Options{Build: env == "dev"})
		dir := filepath.Join(t.TempDir(), "deployment")
		if _, err := render.Write(dir, tree, render.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		for _, path := range []string{"docker-compose.yml", "web/docker-compose.yml"} {
			f, _ := tree.File(path)
			for _, want := range []string{`"serve"`, `"it costs $$5"`, `user: "1000"`, "stop_grace_period: 1m30s", `stop_signal: "SIGINT"`, `"db.local:10.0.0.5"`, `memory: "128M"`,
				`"com.example.cost": "$$$$"`, `restart: "always"`, `test: "wget -qO- http://localhost:8080/health || exit 1"`} {
				if !strings.Contains(string(f.Data), want) {
					t.Errorf("%s %s lacks %s:\n%s", env, path, want, f.Data)
				}
			}
			if env == "demo" != strings.Contains(string(f.Data), `driver: "local"`) {
				t.Errorf("%s %s: compose_env.demo's logging misplaced:\n%s", env, path, f.Data)
			}
			if strings.Contains(string(f.Data), "t0ken") {
				t.Errorf("%s %s holds a secret value", env, path)
			}
		}
		if env == "dev" {
			f, _ := tree.File("web/docker-compose.yml")
			for _, want := range []string{`"NOTE": "costs $$5"`, `target: "runtime"`, filepath.Join(filepath.Dir(cat.File), "conf") + `:/etc/web:ro`} {
				if !strings.Contains(string(f.Data), want) {
					t.Errorf("dev lacks %s:\n%s", want, f.Data)
				}
			}
		}
		ex, _ := tree.File("web/" + render.EnvExample)
		if !strings.Contains(string(ex.Data), "SECRET__WEB__API_TOKEN=\n") || strings.Contains(string(ex.Data), "t0ken") {
			t.Errorf("%s web/.env.example:\n%s", env, ex.Data)
		}
		for _, cli := range clis {
			out := string(runIn(t, dir, append(cli, "config")...))
			wants := []string{"1m30s", "SIGINT", "somaxconn", "it costs $$5", "max-size"}
			if env == "demo" {
				wants = wants[:4] // compose_env.demo's logging has none
			}
			for _, want := range wants {
				if !strings.Contains(out, want) {
					t.Errorf("%s: %v config lacks %s:\n%s", env, cli, want, out)
				}
			}
		}
		if env != "cluster" {
			continue
		}
		stack, _ := tree.File(render.StackFile)
		for _, want := range []string{"# expose, restart: left out, docker stack deploy ignores them", "      resources:\n        limits:", `"serve"`} {
			if !strings.Contains(string(stack.Data), want) {
				t.Errorf("stack file lacks %q:\n%s", want, stack.Data)
			}
		}
		if strings.Contains(string(stack.Data), "\n    restart: ") {
			t.Errorf("the stack file carries restart:\n%s", stack.Data)
		}
		if exec.Command("docker", "stack", "config", "--help").Run() == nil {
			out := string(runIn(t, dir, "docker", "stack", "config", "-c", render.StackFile))
			for _, want := range []string{"memory: \"134217728\"", "condition: any", "user: \"1000\"", "stop_grace_period: 1m30s", "stop_signal: SIGINT"} {
				if !strings.Contains(out, want) {
					t.Errorf("docker stack config lacks %q:\n%s", want, out)
				}
			}
		} else if testenv.InCI() {
			t.Fatal("docker stack config is not available (CI=true)")
		}
	}
}

// TestPassthroughInConfigHash: a service whose passthrough changes gets
// another config hash (its container is replaced); the others keep theirs.
func TestPassthroughInConfigHash(t *testing.T) {
	cat := loadPassthrough(t)
	dev := cat.Environments["dev"]
	before, err := render.ConfigHashes(cat, dev, render.Options{})
	if err != nil {
		t.Fatal(err)
	}
	web, _ := cat.Service("web")
	// In this order: compose_env's user wins over compose's, so once it is
	// set a change of compose's user changes nothing.
	for _, c := range []struct {
		name   string
		change func()
	}{
		{"compose", func() { web.Compose["user"] = "1001" }},
		{"compose_env", func() { web.ComposeEnv["dev"] = map[string]any{"user": "1002"} }},
		{"labels", func() { web.Labels["com.example.team"] = "search" }},
		{"healthcheck", func() { web.HealthcheckOptions["retries"] = int64(4) }},
		{"stop_grace_period", func() { web.StopGracePeriod = catalog.Duration(time.Minute) }},
		{"stop_signal", func() { web.StopSignal = "SIGQUIT" }},
	} {
		name := c.name
		c.change()
		after, err := render.ConfigHashes(cat, dev, render.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if after["web"] == before["web"] || after["db"] != before["db"] {
			t.Errorf("%s: web %s -> %s, db %s -> %s", name, before["web"], after["web"], before["db"], after["db"])
		}
		before = maps.Clone(after)
	}
	// Another environment's keys do not count here.
	web.ComposeEnv["demo"] = map[string]any{"user": "2000"}
	if after, _ := render.ConfigHashes(cat, dev, render.Options{}); after["web"] != before["web"] {
		t.Error("demo's compose_env changed dev's config hash")
	}
}
