package tasks_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/maestro-platform/deploy/internal/crashpoint"
	"github.com/maestro-platform/deploy/internal/magerun"
	"github.com/maestro-platform/deploy/internal/testenv"
	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/maestro-platform/deploy/tasks/health"
	"github.com/maestro-platform/deploy/tasks/labels"
	"github.com/maestro-platform/deploy/tasks/render"
)

// runner runs the compiled targets, as `mage` would, on a private copy of
// the sample platform.
type runner struct {
	t   *testing.T
	exe string
	p   *testenv.Platform
	env []string
	// dockerHost is the engine the targets deploy to ("": DOCKER_HOST or
	// the default), and wrap the command they run under (nsenter, to run
	// them where that engine's published ports are).
	dockerHost string
	wrap       []string
}

func newRunner(t *testing.T) *runner {
	testenv.RequireDocker(t)
	testenv.RequireCommand(t, "docker-compose")
	var out bytes.Buffer
	exe, err := magerun.Targets(testenv.RepoRoot(), &out)
	if err != nil {
		t.Fatalf("compile the targets: %v\n%s", err, out.String())
	}
	p := testenv.SamplePlatform(t, "crash")
	r := &runner{t: t, exe: exe, p: p,
		env: append(os.Environ(), "DEPLOY_CATALOG="+p.Catalog, "DEPLOY_DIR="+p.Deploy, "NO_COLOR=1")}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		_, _ = r.cmd(ctx, "", "down", "-volumes").CombinedOutput()
		out, _ := exec.CommandContext(ctx, "docker", "images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", "reference="+p.Project+"/*").Output()
		for _, ref := range strings.Fields(string(out)) {
			_ = exec.CommandContext(ctx, "docker", "rmi", "-f", ref).Run()
		}
	})
	return r
}

func (r *runner) cmd(ctx context.Context, point string, args ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, r.exe, args...)
	if len(r.wrap) > 0 {
		c = exec.CommandContext(ctx, r.wrap[0], append(append(r.wrap[1:], r.exe), args...)...)
	}
	c.Dir = r.p.Root
	c.Env = append(r.env, crashpoint.Env+"="+point)
	return c
}

// run runs a target to its end and fails the test if it fails.
func (r *runner) run(ctx context.Context, args ...string) string {
	r.t.Helper()
	out, err := r.cmd(ctx, "", args...).CombinedOutput()
	if err != nil {
		r.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// interrupt runs a target until it reaches the crash point, then sends it
// sig. It fails the test if the point is never reached.
func (r *runner) interrupt(ctx context.Context, point string, sig syscall.Signal, args ...string) {
	r.t.Helper()
	c := r.cmd(ctx, point, args...)
	var out bytes.Buffer
	c.Stdout = &out
	stderr, err := c.StderrPipe()
	if err != nil {
		r.t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		r.t.Fatal(err)
	}
	reached := false
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		if sc.Text() == "crashpoint: "+point {
			reached = true
			_ = c.Process.Signal(sig)
			break
		}
	}
	go func() { _, _ = io.Copy(&out, stderr) }()
	err = c.Wait()
	if !reached {
		r.t.Fatalf("%s never reached crash point %s (%v):\n%s", strings.Join(args, " "), point, err, out.String())
	}
	if err == nil {
		r.t.Fatalf("%s interrupted at %s with %s exited 0:\n%s", strings.Join(args, " "), point, sig, out.String())
	}
}

// change makes the next run do real work at every step: a prebuild input
// (so a prebuild and an image build), and an env value (so a render and
// a container replacement).
func (r *runner) change(n int) {
	r.t.Helper()
	src := filepath.Join(r.p.Root, "examples", "maestro-platform", "quality-fabric", "version.go")
	code := fmt.Sprintf("package main\n\n// version changes in the interrupt tests.\nconst version = %d\n\nvar _ = version\n", n)
	if err := os.WriteFile(src, []byte(code), 0o644); err != nil {
		r.t.Fatal(err)
	}
	b, err := os.ReadFile(r.p.Catalog)
	if err != nil {
		r.t.Fatal(err)
	}
	re := regexp.MustCompile(`LOG_LEVEL = "[a-z0-9]+"`)
	b = re.ReplaceAll(b, []byte(fmt.Sprintf(`LOG_LEVEL = "level%d"`, n)))
	if err := os.WriteFile(r.p.Catalog, b, 0o644); err != nil {
		r.t.Fatal(err)
	}
}

// converged checks that the stack is what an uninterrupted deployAll
// makes: the folder as render writes it (a plan finds nothing), one
// running healthy container per service on the latest image with the
// rendered configuration, and testAll's report all green.
func (r *runner) converged(ctx context.Context) {
	r.t.Helper()
	if out, err := r.cmd(ctx, "", "plan").CombinedOutput(); err != nil {
		r.t.Errorf("plan after the rerun: %v\n%s", err, out)
	}
	e, err := engine.Connect(ctx, r.dockerHost)
	if err != nil {
		r.t.Fatal(err)
	}
	defer e.Close()
	cs, err := health.Containers(ctx, e, r.p.Project)
	if err != nil {
		r.t.Fatal(err)
	}
	byService := map[string][]engine.Container{}
	for _, c := range cs {
		if c.Labels[labels.Probe] == "" {
			byService[c.Service] = append(byService[c.Service], c)
		}
	}
	compose, err := os.ReadFile(filepath.Join(r.p.Deploy, render.ComposeFile))
	if err != nil {
		r.t.Fatal(err)
	}
	for _, svc := range []string{"state-store", "template-service", "automation-service", "k8s-execution-service", "quality-fabric", "maestro-gateway"} {
		c := byService[svc]
		if len(c) != 1 || c[0].State != "running" || c[0].Health != "healthy" {
			r.t.Errorf("%s: containers %+v, want one running healthy", svc, c)
			continue
		}
		latest, err := e.ImageID(ctx, r.p.Project+"/"+svc+":latest")
		if err != nil || c[0].ImageID != latest {
			r.t.Errorf("%s runs %s, want the latest image %s (%v)", svc, c[0].ImageID, latest, err)
		}
		if h := c[0].Labels[labels.ConfigHash]; !strings.Contains(string(compose), h) {
			r.t.Errorf("%s runs config hash %s, not one the rendered file holds", svc, h)
		}
	}
	b, err := os.ReadFile(filepath.Join(r.p.Deploy, "reports", "testall.json"))
	if err != nil {
		r.t.Fatal(err)
	}
	var rep struct {
		OK     bool `json:"ok"`
		Failed int  `json:"failed"`
	}
	if json.Unmarshal(b, &rep) != nil || !rep.OK || rep.Failed != 0 {
		r.t.Errorf("testAll report after the rerun: %s", b)
	}
	leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(r.p.Deploy), ".deployment.render-*"))
	if len(leftovers) != 0 {
		r.t.Errorf("an interrupted render left %v", leftovers)
	}
}

// Interrupt each local command at each phase boundary, with SIGINT (Ctrl-C:
// the command cancels its work and returns) and SIGKILL (no chance to clean
// up), then run the same command again with nothing done by hand: it ends
// as an uninterrupted run would.
func TestInterruptThenRerunConverges(t *testing.T) {
	r := newRunner(t)
	ctx, cancel := testenv.Context(t)
	defer cancel()
	r.run(ctx, "deployAll")
	cells := []struct {
		command string
		points  []string
	}{
		{"render", []string{"render:before-swap"}},
		{"build", []string{"build:after-prebuild", "build:before-tag"}},
		{"up", []string{"up:before-compose", "apply:started", "up:before-state"}},
		{"testAll", []string{"testall:before-reports"}},
		// deployAll runs the same steps, whose every point the cells above
		// interrupt (each then rerun, and followed by deployAll): here
		// deployAll itself is the interrupted command, once in its build
		// and once in its up.
		{"deployAll", []string{"build:after-prebuild", "apply:started"}},
	}
	n := 0
	for _, cell := range cells {
		for _, point := range cell.points {
			for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGKILL} {
				n++
				name := fmt.Sprintf("%s at %s by %s", cell.command, point, map[syscall.Signal]string{syscall.SIGINT: "SIGINT", syscall.SIGKILL: "SIGKILL"}[sig])
				t.Run(name, func(t *testing.T) {
					r.t = t
					r.change(n)
					// What the command needs before it: what deployAll's
					// earlier steps would have done.
					switch cell.command {
					case "build":
						r.run(ctx, "render")
					case "up":
						r.run(ctx, "render")
						r.run(ctx, "build")
					case "testAll":
						r.run(ctx, "render")
						r.run(ctx, "build")
						r.run(ctx, "up")
					}
					r.interrupt(ctx, point, sig, cell.command)
					r.run(ctx, cell.command)
					if cell.command != "deployAll" {
						r.run(ctx, "deployAll") // the rest of the pipeline, uninterrupted
					}
					r.converged(ctx)
				})
			}
		}
	}
	if !t.Failed() {
		t.Logf("%d interrupts, each followed by a rerun that converged", n)
	}
}

// The engine restarts under a running stack (a reboot, a Docker upgrade):
// the next deployAll is a noop or heals, and testAll is green. The engine
// restarted is a second one, in a network namespace of its own, standing
// in for this machine's: restarting the machine's own engine would break
// every test running beside this one. The targets run inside that
// namespace, with DOCKER_HOST naming the engine, so that they reach its
// published ports on 127.0.0.1 as they would locally.
func TestLocalEngineRestart(t *testing.T) {
	r := newRunner(t)
	h := testenv.StartRemote(t)
	r.dockerHost = h.Socket
	r.wrap = []string{"nsenter", "--net=/run/netns/" + h.Namespace}
	r.env = append(r.env, "DOCKER_HOST="+h.Socket)
	ctx, cancel := testenv.Context(t)
	defer cancel()
	r.run(ctx, "deployAll")
	r.converged(ctx)
	e, err := engine.Connect(ctx, h.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	before, err := e.Containers(ctx, r.p.Project)
	if err != nil {
		t.Fatal(err)
	}

	h.RestartEngine(t)
	out := r.run(ctx, "deployAll")
	r.converged(ctx)
	// What came back by itself (restart policy) was kept, not recreated:
	// the rerun healed or did nothing, and said which.
	after, err := e.Containers(ctx, r.p.Project)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, c := range after {
		ids[c.ID] = true
	}
	for _, c := range before {
		if c.Labels[labels.Probe] == "" && !ids[c.ID] {
			t.Errorf("%s was recreated after the engine restarted; its container should have come back as it was", c.Service)
		}
	}
	if !strings.Contains(out, "unchanged") && !strings.Contains(out, "healed") {
		t.Errorf("the rerun's summary says neither unchanged nor healed:\n%s", out)
	}
	t.Logf("deployAll after the engine restarted:\n%s", out)
}
