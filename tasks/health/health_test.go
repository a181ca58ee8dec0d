package health_test

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/maestro-platform/deploy/internal/testenv"
	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/maestro-platform/deploy/tasks/health"
	"github.com/maestro-platform/deploy/tasks/labels"
	"github.com/maestro-platform/deploy/tasks/ui"
)

func connect(t *testing.T) *engine.Engine {
	t.Helper()
	testenv.RequireDocker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	e, err := engine.Connect(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// sampleImage builds the sample quality-fabric service (a static HTTP
// server with -healthcheck and FAIL_HEALTH) into a scratch image of a
// repository of this test's own, removed when the test ends.
func sampleImage(t *testing.T, e *engine.Engine) string {
	t.Helper()
	testenv.RequireCommand(t, "go")
	dir := t.TempDir()
	for name, content := range map[string]string{
		"Dockerfile":    "FROM scratch\nCOPY app /app\nENTRYPOINT [\"/app\"]\n",
		".dockerignore": "*\n!app\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	repo := "healthtest/" + testenv.ProjectName(t, "svc")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := e.Build(ctx, []engine.BuildSpec{{Service: "sample", Context: dir, Repo: repo,
		Labels: map[string]string{"io.maestro.test-repo": repo},
		Prebuild: []string{"go", "build", "-C", testenv.RepoRoot(), "-trimpath", "-o", filepath.Join(dir, "app"),
			"./examples/maestro-platform/quality-fabric"},
		PrebuildEnv:     map[string]string{"CGO_ENABLED": "0", "GOOS": "linux"},
		PrebuildInputs:  []string{dir},
		PrebuildOutputs: []string{"app"},
	}}, engine.BuildOptions{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = e.API.ImageRemove(context.Background(), res[0].ImageID, client.ImageRemoveOptions{Force: true})
	})
	return repo + ":latest"
}

type run struct {
	service  string
	env      []string
	cmd      []string
	hostPort int
	health   bool
	// slowHealth, when set, is the healthcheck's test, run by the engine
	// only every hour: only the runner's own probe can see it pass.
	slowHealth []string
}

// start creates and starts a container labelled like compose's, and
// removes it when the test ends.
func start(t *testing.T, e *engine.Engine, project, image string, r run) string {
	t.Helper()
	ctx, cancel := testenv.Context(t)
	defer cancel()
	cfg := &container.Config{Image: image, Cmd: r.cmd,
		Env:    append([]string{"SERVICE_NAME=" + r.service, "PORT=8080"}, r.env...),
		Labels: map[string]string{labels.ComposeProject: project, labels.ComposeService: r.service}}
	if r.health {
		cfg.Healthcheck = &container.HealthConfig{Test: []string{"CMD", "/app", "-healthcheck"},
			Interval: 300 * time.Millisecond, Timeout: 2 * time.Second, Retries: 2}
	}
	if r.slowHealth != nil {
		cfg.Healthcheck = &container.HealthConfig{Test: r.slowHealth, Interval: time.Hour, Timeout: 5 * time.Second, Retries: 1}
	}
	// A network of its own, as compose gives a project: the engine's
	// default bridge is not reachable from the host on every machine.
	hc := &container.HostConfig{NetworkMode: container.NetworkMode(projectNetwork(t, e, project))}
	if r.hostPort > 0 {
		port := network.MustParsePort("8080/tcp")
		cfg.ExposedPorts = network.PortSet{port: {}}
		hc.PortBindings = network.PortMap{port: {{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: strconv.Itoa(r.hostPort)}}}
	}
	c, err := e.API.ContainerCreate(ctx, client.ContainerCreateOptions{Config: cfg, HostConfig: hc,
		Name: project + "-" + r.service})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := testenv.Context(t)
		defer cancel()
		if _, err := e.API.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true}); err != nil {
			t.Logf("cleanup %s: %v", r.service, err)
		}
	})
	if _, err := e.API.ContainerStart(ctx, c.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	return c.ID
}

var networks sync.Map // project -> network name

func projectNetwork(t *testing.T, e *engine.Engine, project string) string {
	if n, ok := networks.Load(project); ok {
		return n.(string)
	}
	ctx, cancel := testenv.Context(t)
	defer cancel()
	name := project + "_default"
	if _, err := e.API.NetworkCreate(ctx, name, client.NetworkCreateOptions{
		Labels: map[string]string{labels.ComposeProject: project}}); err != nil {
		t.Fatal(err)
	}
	networks.Store(project, name)
	// Registered before any container's cleanup, so it runs after them.
	t.Cleanup(func() {
		ctx, cancel := testenv.Context(t)
		defer cancel()
		if _, err := e.API.NetworkRemove(ctx, name, client.NetworkRemoveOptions{}); err != nil {
			t.Logf("cleanup network %s: %v", name, err)
		}
	})
	return name
}

// wait is health.Wait on the project's compose containers.
func wait(ctx context.Context, e *engine.Engine, project string, targets []health.Target, deadline time.Duration, p *ui.Printer) ([]health.Result, error) {
	return health.Wait(ctx, &health.Compose{Engine: e, Project: project}, targets, health.Options{Deadline: deadline, Printer: p})
}

func url(port int) string { return "http://127.0.0.1:" + strconv.Itoa(port) + "/health" }

func TestWaitHealthy(t *testing.T) {
	e := connect(t)
	image := sampleImage(t, e)
	project := testenv.ProjectName(t, "wait")
	ports := testenv.FreePorts(t, 3)
	ids := map[string]string{
		"web":     start(t, e, project, image, run{service: "web", hostPort: ports[0]}),
		"checked": start(t, e, project, image, run{service: "checked", health: true}),
		"sick":    start(t, e, project, image, run{service: "sick", hostPort: ports[1], env: []string{"FAIL_HEALTH=1"}}),
		"crash":   start(t, e, project, image, run{service: "crash", cmd: []string{"-no-such-flag"}}),
		"sickhc":  start(t, e, project, image, run{service: "sickhc", health: true, env: []string{"FAIL_HEALTH=1"}}),
	}
	ctx := context.Background()

	t.Run("containers by compose labels", func(t *testing.T) {
		cs, err := e.Containers(ctx, project)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]engine.Container{}
		for _, c := range cs {
			got[c.Service] = c
		}
		if len(cs) != len(ids) {
			t.Fatalf("got %d containers, want %d: %+v", len(cs), len(ids), cs)
		}
		web := got["web"]
		if web.ID != ids["web"] || web.Project != project || web.Image != image || !strings.HasPrefix(web.ImageID, "sha256:") {
			t.Errorf("web = %+v", web)
		}
		if len(web.Ports) != 1 || web.Ports[0].HostPort != ports[0] || web.Ports[0].ContainerPort != 8080 || web.Ports[0].Proto != "tcp" {
			t.Errorf("web ports = %+v, want %d->8080/tcp", web.Ports, ports[0])
		}
		if web.StartedAt.IsZero() || web.Created.IsZero() {
			t.Errorf("web times = %v, %v", web.Created, web.StartedAt)
		}
		if other, err := e.Containers(ctx, project+"-other"); err != nil || len(other) != 0 {
			t.Errorf("another project: %v, %v", other, err)
		}
	})

	t.Run("healthy over HTTP and by healthcheck", func(t *testing.T) {
		var out bytes.Buffer
		res, err := wait(ctx, e, project, []health.Target{
			{Service: "web", URL: url(ports[0])},
			{Service: "checked"},
		}, 60*time.Second, ui.Plain(&out))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			if !r.Healthy || r.Unit != ids[r.Service] {
				t.Errorf("%+v", r)
			}
		}
		if c := strings.Count(out.String(), "healthy after"); c != 2 {
			t.Errorf("want two healthy lines:\n%s", out.String())
		}
		if cs, _ := e.Containers(ctx, project); !containsHealth(cs, "checked", "healthy") {
			t.Errorf("Containers does not report checked as healthy: %+v", cs)
		}
	})

	t.Run("exited fails fast with its log", func(t *testing.T) {
		_, err := wait(ctx, e, project, []health.Target{
			{Service: "web", URL: url(ports[0])},
			{Service: "crash", URL: url(ports[2])},
		}, 2*time.Minute, nil)
		if err == nil {
			t.Fatal("an exited container was healthy")
		}
		// Failed by its exit, not by the deadline.
		if strings.Contains(err.Error(), "deadline passed") {
			t.Errorf("an exited container was waited for until the deadline: %v", err)
		}
		t.Logf("%v", err)
		for _, want := range []string{"not healthy: crash", "crash: exited (exit code 2)", "flag provided but not defined: -no-such-flag"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error lacks %q:\n%v", want, err)
			}
		}
		if strings.Contains(err.Error(), "web:") {
			t.Errorf("the healthy service is blamed:\n%v", err)
		}
	})

	t.Run("unhealthy by healthcheck fails fast", func(t *testing.T) {
		t0 := time.Now()
		_, err := wait(ctx, e, project, []health.Target{{Service: "sickhc"}}, 2*time.Minute, nil)
		if err == nil || !strings.Contains(err.Error(), "sickhc: unhealthy") {
			t.Fatalf("err = %v, want sickhc unhealthy", err)
		}
		if d := time.Since(t0); d > 30*time.Second {
			t.Errorf("took %v", d)
		}
	})

	t.Run("never healthy ends at the deadline", func(t *testing.T) {
		var out bytes.Buffer
		t0 := time.Now()
		res, err := wait(ctx, e, project, []health.Target{
			{Service: "sick", URL: url(ports[1])},
			{Service: "ghost", URL: url(ports[2])},
		}, 3*time.Second, ui.Plain(&out))
		if err == nil {
			t.Fatal("FAIL_HEALTH=1 was healthy")
		}
		d := time.Since(t0)
		if d < 3*time.Second || d > 20*time.Second {
			t.Errorf("took %v, want about the 3s deadline", d)
		}
		t.Logf("%v", err)
		for _, want := range []string{"not healthy: sick, ghost", "503", "sick listening on :8080", "ghost: no container", "deadline"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error lacks %q:\n%v", want, err)
			}
		}
		if res[0].Healthy || res[0].Unit != ids["sick"] {
			t.Errorf("result = %+v", res[0])
		}
	})

	t.Run("logs", func(t *testing.T) {
		var buf bytes.Buffer
		if err := e.Logs(ctx, ids["crash"], engine.LogOptions{Tail: 5}, &buf); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(buf.String(), "-no-such-flag") {
			t.Errorf("logs = %q", buf.String())
		}
		lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
		if len(lines) > 5 {
			t.Errorf("tail 5 gave %d lines", len(lines))
		}
		// follow ends when the context does.
		fctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		buf.Reset()
		if err := e.Logs(fctx, ids["web"], engine.LogOptions{Follow: true}, &buf); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(buf.String(), "web listening") {
			t.Errorf("follow logs = %q", buf.String())
		}
	})
}

func containsHealth(cs []engine.Container, service, health string) bool {
	for _, c := range cs {
		if c.Service == service && c.Health == health {
			return true
		}
	}
	return false
}

// The engine runs a healthcheck first one interval after the start (an
// hour here): the runner runs it itself while the container starts, so a
// container whose check passes is healthy to the wait at once, while the
// engine still says starting; one whose check fails stays starting, with
// the check's own output.
func TestRunnerProbesStartingContainers(t *testing.T) {
	e := connect(t)
	image := sampleImage(t, e)
	project := testenv.ProjectName(t, "probe")
	start(t, e, project, image, run{service: "good", slowHealth: []string{"CMD", "/app", "-healthcheck"}})
	start(t, e, project, image, run{service: "bad", slowHealth: []string{"CMD", "/app", "-no-such-flag"}})
	ctx, cancel := testenv.Context(t)
	defer cancel()

	res, err := wait(ctx, e, project, []health.Target{{Service: "good"}}, 2*time.Minute, nil)
	if err != nil || len(res) != 1 || !res[0].Healthy {
		t.Fatalf("good: %+v, %v", res, err)
	}
	engineSays, err := e.Containers(ctx, project)
	if err != nil {
		t.Fatal(err)
	}
	runnerSays, err := health.Containers(ctx, e, project)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range engineSays {
		if c.Health != string(container.Starting) {
			t.Errorf("%s: the engine says %q: it ran its own check, so this test proves nothing", c.Service, c.Health)
		}
		got := runnerSays[i]
		switch c.Service {
		case "good":
			if got.Health != string(container.Healthy) {
				t.Errorf("good: the runner says %q, want healthy", got.Health)
			}
		case "bad":
			if got.Health != string(container.Starting) || !strings.Contains(got.HealthOutput, "flag provided but not defined: -no-such-flag") {
				t.Errorf("bad: the runner says %q (%q), want starting with the check's output", got.Health, got.HealthOutput)
			}
		}
	}
}
