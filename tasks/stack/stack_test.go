package stack_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/maestro-platform/deploy/tasks/labels"

	"github.com/maestro-platform/deploy/internal/testenv"
	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/maestro-platform/deploy/tasks/stack"
	"github.com/maestro-platform/deploy/tasks/ui"
)

// deployed opens a private copy of the sample platform and runs the whole
// pipeline on it, as deployAll does.
func open(t *testing.T, p *testenv.Platform) (*stack.Stack, *bytes.Buffer) {
	t.Helper()
	var out bytes.Buffer
	s, err := stack.Open(stack.Config{Catalog: p.Catalog, Out: ui.Plain(&out)})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return s, &out
}

func deployAll(t *testing.T, ctx context.Context, s *stack.Stack) {
	t.Helper()
	for _, step := range []struct {
		name string
		fn   func(context.Context) error
	}{{"render", s.Render}, {"build", s.Build}, {"up", s.Up}, {"testAll", s.TestAll}, {"summary", s.Summary}} {
		if err := step.fn(ctx); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
	}
}

func containerIDs(t *testing.T, ctx context.Context, project string) map[string]string {
	t.Helper()
	eng, err := engine.Connect(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	cs, err := eng.Containers(ctx, project)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for _, c := range cs {
		if c.Labels[labels.Probe] == "" { // testAll's probe server is not a service
			ids[c.Service] = c.ID
		}
	}
	return ids
}

// cleanup removes everything the project left: containers, network,
// volumes, images.
func cleanup(t *testing.T, s *stack.Stack, p *testenv.Platform) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		_ = s.Down(ctx, true)
		p.RemoveImages(ctx)
	})
}

func TestDeployAllNoopRebuildDown(t *testing.T) {
	testenv.RequireDocker(t)
	testenv.RequireCommand(t, "docker-compose")
	ctx, cancel := testenv.Context(t)
	defer cancel()
	p := testenv.SamplePlatform(t, "stk")
	s, out := open(t, p)
	cleanup(t, s, p)

	deployAll(t, ctx, s)
	for svc, port := range p.DevPorts {
		resp, err := httpGet(ctx, port, "/health")
		if err != nil || !strings.Contains(resp, `"status":"ok"`) {
			t.Errorf("%s on %d: %q %v", svc, port, resp, err)
		}
	}
	first := containerIDs(t, ctx, p.Project)
	if len(first) != 6 {
		t.Fatalf("want 6 containers, got %v", first)
	}

	// A second deployAll changes nothing.
	out.Reset()
	s2, out2 := open(t, p)
	deployAll(t, ctx, s2)
	if !strings.Contains(out2.String(), "nothing to build") || !strings.Contains(out2.String(), "nothing changed: 6 services") {
		t.Errorf("second deployAll was not a noop:\n%s", out2)
	}
	if again := containerIDs(t, ctx, p.Project); !equal(first, again) {
		t.Errorf("noop recreated containers: %v -> %v", first, again)
	}

	// One service's source changes: only it is rebuilt and recreated.
	mainGo := filepath.Join(p.Root, "examples/maestro-platform/services/k8s-execution-service/main.go")
	b, _ := os.ReadFile(mainGo)
	if err := os.WriteFile(mainGo, append(b, []byte("\n// changed by the test\nvar _ = 1\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	s3, out3 := open(t, p)
	deployAll(t, ctx, s3)
	if !strings.Contains(out3.String(), "1 built, 5 reused") {
		t.Errorf("want exactly one image rebuilt:\n%s", out3)
	}
	after := containerIDs(t, ctx, p.Project)
	for svc, id := range first {
		changed := after[svc] != id
		if changed != (svc == "k8s-execution-service") {
			t.Errorf("%s: container changed=%v", svc, changed)
		}
	}
	// The summary says what happened to each service, with the same
	// healthy time as up's own line.
	row := summaryRow(t, out3.String(), "k8s-execution-service")
	for _, want := range []string{"built in ", "replaced (image ", "healthy after "} {
		if !strings.Contains(row, want) {
			t.Errorf("summary row lacks %q: %s", want, row)
		}
	}
	// One identifier everywhere: the image replaced in is named by the tag
	// build gave it.
	if m := regexp.MustCompile(`built ` + regexp.QuoteMeta(p.Project) + `/k8s-execution-service:([0-9a-f]{12})`).FindStringSubmatch(out3.String()); m == nil {
		t.Errorf("no built line for k8s-execution-service:\n%s", out3)
	} else if !regexp.MustCompile(`replaced \(image [0-9a-f]{12} -> ` + m[1] + `\)`).MatchString(row) {
		t.Errorf("the summary row names the new image otherwise than build (%s): %s", m[1], row)
	}
	healthy := row[strings.Index(row, "healthy after "):]
	if !regexp.MustCompile(`k8s-execution-service +` + regexp.QuoteMeta(healthy) + `\n`).MatchString(out3.String()) {
		t.Errorf("up's line for k8s-execution-service does not say %q:\n%s", healthy, out3)
	}
	if row := summaryRow(t, out3.String(), "template-service"); !strings.Contains(row, "unchanged") || strings.Contains(row, "built") {
		t.Errorf("summary row of an untouched service: %s", row)
	}

	// One container stopped, one removed, one service's settings edited:
	// status names the first two and fails; deployAll heals, starts and
	// replaces exactly those, and its summary says so.
	for _, args := range [][]string{{"stop", after["quality-fabric"]}, {"rm", "-f", after["automation-service"]}} {
		if out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput(); err != nil {
			t.Fatalf("docker %v: %v\n%s", args, err, out)
		}
	}
	cat, _ := os.ReadFile(p.Catalog)
	edited := strings.Replace(string(cat), `env = { SERVICE_NAME = "maestro-gateway", PORT = "8080", LOG_LEVEL = "info"`, `env = { SERVICE_NAME = "maestro-gateway", PORT = "8080", LOG_LEVEL = "debug"`, 1)
	if edited == string(cat) {
		t.Fatal("the gateway's env is not where the test expects it")
	}
	if err := os.WriteFile(p.Catalog, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	st, stOut := open(t, p)
	err := st.Status(ctx)
	if err == nil {
		t.Errorf("status succeeded with a stopped and a missing service:\n%s", stOut)
	} else {
		for _, want := range []string{"quality-fabric (exited (exit code 0))", "automation-service (missing)"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("status error lacks %q: %v", want, err)
			}
		}
	}
	if row := summaryRow(t, stOut.String(), "automation-service"); !strings.Contains(row, "missing") {
		t.Errorf("status row of the removed service: %q\n%s", row, stOut)
	}
	s4, out4 := open(t, p)
	deployAll(t, ctx, s4)
	for svc, want := range map[string]string{
		"quality-fabric":        "healed (it was exited (exit code 0)), healthy after ",
		"automation-service":    "started, healthy after ",
		"maestro-gateway":       "replaced (configuration changed), healthy after ",
		"template-service":      "unchanged",
		"k8s-execution-service": "unchanged",
		"state-store":           "unchanged",
	} {
		if row := summaryRow(t, out4.String(), svc); !strings.Contains(row, want) {
			t.Errorf("summary row of %s lacks %q: %s", svc, want, row)
		}
	}
	st2, stOut2 := open(t, p)
	if err := st2.Status(ctx); err != nil {
		t.Errorf("status after the heal: %v\n%s", err, stOut2)
	}

	if err := s4.Down(ctx, false); err != nil {
		t.Fatal(err)
	}
	vol := p.Project + "_state-data"
	if err := exec.CommandContext(ctx, "docker", "volume", "inspect", vol).Run(); err != nil {
		t.Errorf("down without -volumes removed volume %s: %v", vol, err)
	}
	assertNothingLeft(t, ctx, p.Project)
}

// summaryRow is the last table row of out that starts with service.
func summaryRow(t *testing.T, out, service string) string {
	t.Helper()
	row := ""
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), service+" ") {
			row = l
		}
	}
	if row == "" {
		t.Errorf("no row for %s in:\n%s", service, out)
	}
	return row
}

func equal(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func imageID(ctx context.Context, ref string) string {
	out, _ := exec.CommandContext(ctx, "docker", "image", "inspect", "-f", "{{.Id}}", ref).Output()
	return strings.TrimSpace(string(out))
}

func httpGet(ctx context.Context, port int, path string) (string, error) {
	out, err := exec.CommandContext(ctx, "curl", "-fsS", "--max-time", "5", "http://127.0.0.1:"+strconv.Itoa(port)+path).CombinedOutput()
	return string(out), err
}

func TestDeadEngine(t *testing.T) {
	p := testenv.SamplePlatform(t, "dead")
	t.Setenv("DOCKER_HOST", "unix:///tmp/no-such-docker.sock")
	s, _ := open(t, p)
	err := s.Build(context.Background())
	if err == nil {
		t.Fatal("build against a dead engine succeeded")
	}
	// Refused at the first contact, not given up on after a wait.
	if strings.Contains(err.Error(), "deadline exceeded") || !strings.Contains(err.Error(), "is the Docker daemon running") {
		t.Errorf("want the dead engine named as the cause: %v", err)
	}
	if !strings.Contains(err.Error(), "/tmp/no-such-docker.sock") {
		t.Errorf("error does not name the socket: %v", err)
	}
	var out bytes.Buffer
	s2, err := stack.Open(stack.Config{Catalog: p.Catalog, Out: ui.Plain(&out)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Doctor(context.Background()); err == nil || !strings.Contains(out.String(), "no-such-docker.sock") {
		t.Errorf("doctor: %v\n%s", err, out.String())
	}
}

func TestPortTaken(t *testing.T) {
	testenv.RequireDocker(t)
	testenv.RequireCommand(t, "docker-compose")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	p := testenv.SamplePlatform(t, "port")
	port := p.DevPorts["quality-fabric"]
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	s, out := open(t, p)
	cleanup(t, s, p)
	if err := s.Doctor(ctx); err == nil {
		t.Error("doctor passed with a taken port")
	}
	want := "port " + strconv.Itoa(port)
	if !strings.Contains(out.String(), want) || !strings.Contains(out.String(), "quality-fabric") {
		t.Errorf("doctor output does not name %s and the service:\n%s", want, out)
	}
	for _, step := range []func(context.Context) error{s.Render, s.Build} {
		if err := step(ctx); err != nil {
			t.Fatal(err)
		}
	}
	err = s.Up(ctx)
	if err == nil || !strings.Contains(err.Error(), strconv.Itoa(port)) || !strings.Contains(err.Error(), "quality-fabric") {
		t.Errorf("up: want an error naming port %d and quality-fabric, got %v", port, err)
	}
	// Refused before anything started: no container of the project.
	if out, err := exec.CommandContext(ctx, "docker", "ps", "-aq", "--filter", "label="+labels.ComposeProject+"="+p.Project).Output(); err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("up refused, yet the project has containers %q (%v)", out, err)
	}
}

func TestNeverHealthyAndBuildFailure(t *testing.T) {
	testenv.RequireDocker(t)
	testenv.RequireCommand(t, "docker-compose")
	ctx, cancel := testenv.Context(t)
	defer cancel()
	p := testenv.SamplePlatform(t, "sick")
	cat, _ := os.ReadFile(p.Catalog)
	text := strings.Replace(string(cat), `env = { SERVICE_NAME = "maestro-gateway",`, `env = { FAIL_HEALTH = "1", SERVICE_NAME = "maestro-gateway",`, 1)
	// The deadline out of reach: the gateway fails by its own healthcheck
	// (unhealthy once its start period is over), whatever the machine's
	// speed; a short deadline could pass before its dependencies are up.
	text = strings.Replace(text, `health_timeout = "2m"`, `health_timeout = "10m"`, 1)
	if err := os.WriteFile(p.Catalog, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	s, _ := open(t, p)
	cleanup(t, s, p)
	for _, step := range []func(context.Context) error{s.Render, s.Build} {
		if err := step(ctx); err != nil {
			t.Fatal(err)
		}
	}
	err := s.Up(ctx)
	if err == nil {
		t.Fatal("up succeeded with a service that never gets healthy")
	}
	for _, want := range []string{"not healthy: maestro-gateway", "listening on"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q (service name and log tail):\n%v", want, err)
		}
	}

	// A broken Dockerfile: the build names the service, and the last good
	// image keeps its tag: nothing points at the failed build.
	latest := p.Project + "/quality-fabric:latest"
	before := imageID(ctx, latest)
	df := filepath.Join(p.Root, "examples/maestro-platform/quality-fabric/Dockerfile")
	if err := os.WriteFile(df, []byte("FROM scratch\nCOPY app /app\nCOPY no-such-file /x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err = s.BuildServices(ctx, []string{"quality-fabric"})
	if err == nil || !strings.Contains(err.Error(), "quality-fabric") || !strings.Contains(err.Error(), "no-such-file") {
		t.Fatalf("build failure: want an error naming the service and the missing file, got %v", err)
	}
	if after := imageID(ctx, latest); before == "" || after != before {
		t.Errorf("%s moved from %q to %q after a failed build", latest, before, after)
	}
}

// A service whose own healthcheck fails is named as the cause, with its
// health output and log tail, once the environment's health_timeout has
// passed, although compose, waiting for it before starting its
// dependant, would only name the dependant, and only when the
// healthcheck's start period is over. The dependant is reported as
// waiting for it. With both compose CLIs.
func TestFailingHealthcheckNamesTheService(t *testing.T) {
	testenv.RequireDocker(t)
	testenv.RequireCommand(t, "docker-compose")
	v2 := testenv.ComposeV2(t)
	ctx, cancel := testenv.Context(t)
	defer cancel()
	p := testenv.SamplePlatform(t, "hc")
	cat, _ := os.ReadFile(p.Catalog)
	text := string(cat)
	i := strings.Index(text, `name = "k8s-execution-service"`)
	j := i + strings.Index(text[i:], `healthcheck = ["/app", "-healthcheck"]`)
	text = text[:j] + `healthcheck = ["/app", "-no-such-flag"]` + text[j+len(`healthcheck = ["/app", "-healthcheck"]`):]
	// The deadline passes before the failing healthcheck can make the
	// container unhealthy (its 60 s start period runs from the container's
	// start, after the deadline's from up's), and leaves the healthy
	// services time to be healthy on a busy machine.
	text = strings.Replace(text, `health_timeout = "2m"`, `health_timeout = "55s"`, 1)
	if err := os.WriteFile(p.Catalog, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	s0, _ := open(t, p)
	cleanup(t, s0, p)
	for _, cli := range []struct{ name, path string }{{"v1", "docker-compose"}, {"v2", v2}} {
		t.Run(cli.name, func(t *testing.T) {
			t.Setenv("DEPLOY_COMPOSE", cli.path)
			s, out := open(t, p)
			for _, step := range []func(context.Context) error{s.Render, s.Build} {
				if err := step(ctx); err != nil {
					t.Fatal(err)
				}
			}
			err := s.Up(ctx)
			if err == nil {
				t.Fatal("up succeeded although k8s-execution-service's healthcheck fails")
			}
			msg := err.Error()
			t.Logf("up said:\n%s\nand returned:\n%s", out, msg)
			for _, want := range []string{
				"not healthy: k8s-execution-service\n",
				"the 55s deadline passed",
				"flag provided but not defined: -no-such-flag", // its health output
				"listening on", // its log tail
				"maestro-gateway: not started: it waits for k8s-execution-service",
			} {
				if !strings.Contains(msg, want) {
					t.Errorf("error lacks %q:\n%s", want, msg)
				}
			}
			if strings.Contains(msg, "is unhealthy") {
				t.Errorf("error repeats compose's message naming the dependant:\n%s", msg)
			}
			if !strings.Contains(out.String(), "k8s-execution-service") {
				t.Errorf("no live line for the failing service:\n%s", out)
			}
			if err := s.Down(ctx, true); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// The same deployment works with compose v2: deployAll, a noop second
// run, and down.
func TestDeployAllComposeV2(t *testing.T) {
	testenv.RequireDocker(t)
	t.Setenv("DEPLOY_COMPOSE", testenv.ComposeV2(t))
	ctx, cancel := testenv.Context(t)
	defer cancel()
	p := testenv.SamplePlatform(t, "v2")
	s, _ := open(t, p)
	cleanup(t, s, p)
	deployAll(t, ctx, s)
	first := containerIDs(t, ctx, p.Project)
	if len(first) != 6 {
		t.Fatalf("want 6 containers, got %v", first)
	}
	s2, out := open(t, p)
	deployAll(t, ctx, s2)
	if !strings.Contains(out.String(), "nothing changed: 6 services") {
		t.Errorf("second deployAll under v2 was not a noop:\n%s", out)
	}
	if err := s2.Down(ctx, true); err != nil {
		t.Fatal(err)
	}
	assertNothingLeft(t, ctx, p.Project)
}

// assertNothingLeft fails when any container (testAll's probe included) or
// network of the project is still there.
func assertNothingLeft(t *testing.T, ctx context.Context, project string) {
	t.Helper()
	for _, what := range [][]string{
		{"ps", "-aq", "--filter", "label=com.docker.compose.project=" + project},
		{"network", "ls", "-q", "--filter", "name=" + project + "_"},
	} {
		out, err := exec.CommandContext(ctx, "docker", what...).Output()
		if err != nil {
			t.Fatal(err)
		}
		if left := strings.TrimSpace(string(out)); left != "" {
			t.Errorf("down left %s: %s", what[0], left)
		}
	}
}

// runScript runs a rendered script of the stack's folder with extra
// environment variables, and returns its output and exit code.
func runScript(t *testing.T, ctx context.Context, s *stack.Stack, script string, env ...string) (string, int) {
	t.Helper()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(s.Dir, script))
	cmd.Env = append(append(os.Environ(), "DEPLOY_HEALTH_TIMEOUT=120"), env...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	return string(out), 0
}

// checkLine is the line test-all.sh prints for one check, "" when none.
func checkLine(out, service, check string) string {
	re := regexp.MustCompile(`(?m)^(PASS|FAIL|SKIP)  ` + regexp.QuoteMeta(service) + ` +` + regexp.QuoteMeta(check) + `  +.*$`)
	return re.FindString(out)
}

// The rendered scripts work with docker and a compose CLI alone.
// deploy-all.sh builds and starts the stack and waits until it is healthy;
// mage then says that it rebuilds images built outside it, and
// deploy-all.sh reuses mage's. test-all.sh runs testAll's 17 checks, the
// network ones with testAll's probe image; without the probe it says
// plainly what it did not check; a failing JSON field and a stopped
// service fail in plain words. With both compose CLIs (DEPLOY_COMPOSE),
// each on a platform of its own, so that the first leaves no image to the
// second.
func TestRenderedScripts(t *testing.T) {
	testenv.RequireDocker(t)
	testenv.RequireCommand(t, "docker-compose")
	testenv.RequireCommand(t, "curl")
	v2 := testenv.ComposeV2(t)
	for _, cli := range []struct{ name, path string }{{"v1", "docker-compose"}, {"v2", v2}} {
		t.Run(cli.name, func(t *testing.T) {
			t.Setenv("DEPLOY_COMPOSE", cli.path)
			renderedScripts(t, strings.Fields(cli.path))
		})
	}
}

func renderedScripts(t *testing.T, compose []string) {
	ctx, cancel := testenv.Context(t)
	defer cancel()
	p := testenv.SamplePlatform(t, "sh")
	s, out := open(t, p)
	cleanup(t, s, p)
	if err := s.Render(ctx); err != nil {
		t.Fatal(err)
	}
	services := []string{"state-store", "template-service", "automation-service", "k8s-execution-service", "quality-fabric", "maestro-gateway"}

	// No image yet: deploy-all.sh builds every one with compose.
	got, code := runScript(t, ctx, s, "deploy-all.sh")
	if code != 0 || !strings.Contains(got, "deploy-all: OK: 6 services healthy") {
		t.Fatalf("deploy-all.sh: exit %d\n%s", code, got)
	}
	for _, svc := range services {
		if want := "deploy-all: build " + svc + ": no image " + p.Project + "/" + svc + ":latest yet"; !strings.Contains(got, want) {
			t.Errorf("deploy-all.sh does not say %q:\n%s", want, got)
		}
	}

	// mage builds by content and says that the images it replaces under
	// :latest were built outside it.
	if err := s.Build(ctx); err != nil {
		t.Fatal(err)
	}
	for _, svc := range services {
		note := p.Project + "/" + svc + ":latest was built outside mage (deploy-all.sh?) and now names this build"
		if !regexp.MustCompile(`(?m)^.*` + regexp.QuoteMeta(svc) + ` +built .*` + regexp.QuoteMeta(note)).MatchString(out.String()) {
			t.Errorf("mage's build line of %s does not say %q:\n%s", svc, note, out)
		}
	}
	// deploy-all.sh now runs mage's images: it builds nothing.
	got, code = runScript(t, ctx, s, "deploy-all.sh")
	if code != 0 || strings.Contains(got, "deploy-all: build ") || !strings.Contains(got, "deploy-all: OK: 6 services healthy") {
		t.Fatalf("deploy-all.sh over mage's images: exit %d\n%s", code, got)
	}
	for _, svc := range services {
		if want := "deploy-all: reuse " + svc + ": " + p.Project + "/" + svc + ":latest, built by mage"; !strings.Contains(got, want) {
			t.Errorf("deploy-all.sh does not say %q:\n%s", want, got)
		}
	}

	// testAll builds the probe image on this engine; with it test-all.sh
	// runs what testAll runs, network checks included.
	if err := s.TestAll(ctx); err != nil {
		t.Fatalf("testAll: %v\n%s", err, out)
	}
	got, code = runScript(t, ctx, s, "test-all.sh")
	if code != 0 || !strings.Contains(got, "test-all: 17 checks: 17 PASS, 0 FAIL, 0 SKIP") || !strings.Contains(got, ", probe maestro-deploy/probe:") {
		t.Fatalf("test-all.sh with the probe: exit %d\n%s", code, got)
	}
	for _, c := range [][2]string{{"state-store", "container"}, {"template-service", "health"}, {"template-service", "reaches state-store"},
		{"maestro-gateway", "gateway -> k8s-execution-service"}} {
		if l := checkLine(got, c[0], c[1]); !strings.HasPrefix(l, "PASS") {
			t.Errorf("%s/%s: %q\n%s", c[0], c[1], l, got)
		}
	}

	// Without the probe: http checks with curl, their JSON field and the
	// network checks not checked, and said so; nothing counts as a pass
	// that was not wholly checked.
	got, code = runScript(t, ctx, s, "test-all.sh", "DEPLOY_PROBE_IMAGE=")
	if code != 0 || !strings.Contains(got, "test-all: 17 checks: 6 PASS, 0 FAIL, 11 SKIP") {
		t.Fatalf("test-all.sh without the probe: exit %d\n%s", code, got)
	}
	for _, want := range []string{
		"without the probe image: DEPLOY_PROBE_IMAGE is empty",
		"test-all: not checked: 6 network checks and the JSON field of 5 http checks: they need testAll's probe image (DEPLOY_PROBE_IMAGE is empty).",
		"`mage testAll` builds it on this engine",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("test-all.sh without the probe does not say %q:\n%s", want, got)
		}
	}
	if l := checkLine(got, "template-service", "health"); l != `SKIP  template-service         health                             HTTP 200; not checked: json field status = "ok" (needs the probe image)` {
		t.Errorf("health without the probe: %q", l)
	}
	if l := checkLine(got, "template-service", "reaches state-store"); !strings.HasPrefix(l, "SKIP") || !strings.Contains(l, "not checked") {
		t.Errorf("network check without the probe: %q", l)
	}

	// A JSON field that does not match fails with the probe, in words; the
	// catalog changes only test-all.sh.
	edit(t, p.Catalog, `PORT = "8004", LOG_LEVEL = "info" }

  [[services.checks]]
  name = "health"
  json_field = "status"
  json_equals = "ok"`, `PORT = "8004", LOG_LEVEL = "info" }

  [[services.checks]]
  name = "health"
  json_field = "status"
  json_equals = "degraded"`)
	s2, _ := open(t, p)
	if err := s2.Render(ctx); err != nil {
		t.Fatal(err)
	}
	got, code = runScript(t, ctx, s2, "test-all.sh")
	if l := checkLine(got, "k8s-execution-service", "health"); code != 1 || l != `FAIL  k8s-execution-service    health                             json field status = "ok" (want "degraded")` ||
		!strings.Contains(got, "test-all: 17 checks: 16 PASS, 1 FAIL, 0 SKIP") {
		t.Errorf("test-all.sh with a JSON field that does not match: exit %d, line %q\n%s", code, l, got)
	}

	// A stopped service: its container, http and network checks fail in
	// plain words, with the probe and without; never "000".
	stop := exec.CommandContext(ctx, compose[0], append(compose[1:], "-p", p.Project, "-f", filepath.Join(s.Dir, "docker-compose.yml"), "stop", "template-service")...)
	if b, err := stop.CombinedOutput(); err != nil {
		t.Fatalf("stop: %v\n%s", err, b)
	}
	port := strconv.Itoa(p.DevPorts["template-service"])
	for _, run := range []struct {
		env  []string
		want map[string]string
	}{
		{nil, map[string]string{
			"container":           "FAIL  template-service         container                          exited (exit code 0)",
			"health":              "FAIL  template-service         health                             connection refused",
			"reaches state-store": "FAIL  template-service         reaches state-store                no such host template-service",
		}},
		{[]string{"DEPLOY_PROBE_IMAGE="}, map[string]string{
			"container":           "FAIL  template-service         container                          exited (exit code 0)",
			"health":              "FAIL  template-service         health                             no answer: could not connect to 127.0.0.1:" + port,
			"reaches state-store": "SKIP  template-service         reaches state-store                not checked: made from inside the stack's network by the probe image",
		}},
	} {
		got, code = runScript(t, ctx, s2, "test-all.sh", run.env...)
		if code != 1 || regexp.MustCompile(`\b000\b`).MatchString(got) {
			t.Errorf("test-all.sh %v with template-service stopped: exit %d\n%s", run.env, code, got)
		}
		for check, want := range run.want {
			if l := checkLine(got, "template-service", check); l != want {
				t.Errorf("test-all.sh %v, template-service/%s:\n got %q\nwant %q", run.env, check, l, want)
			}
		}
	}
}

// deploy-all.sh after mage deployAll reuses mage's images: it builds
// nothing, replaces no container and leaves testAll's probe server alone;
// the next deployAll then has nothing to do. With both compose CLIs, the
// script and mage using the same one (DEPLOY_COMPOSE).
func TestDeployScriptAndMageShareImages(t *testing.T) {
	testenv.RequireDocker(t)
	testenv.RequireCommand(t, "docker-compose")
	testenv.RequireCommand(t, "curl")
	v2 := testenv.ComposeV2(t)
	ctx, cancel := testenv.Context(t)
	defer cancel()
	p := testenv.SamplePlatform(t, "share")
	s0, _ := open(t, p)
	cleanup(t, s0, p)
	for _, cli := range []struct{ name, path string }{{"v1", "docker-compose"}, {"v2", v2}} {
		t.Run(cli.name, func(t *testing.T) {
			t.Setenv("DEPLOY_COMPOSE", cli.path)
			s, _ := open(t, p)
			deployAll(t, ctx, s)
			before := containerIDs(t, ctx, p.Project)
			probe := probeServer(t, ctx, p.Project)
			if len(before) != 6 || probe == "" {
				t.Fatalf("after deployAll: containers %v, probe server %q", before, probe)
			}

			got, code := runScript(t, ctx, s, "deploy-all.sh")
			if code != 0 || strings.Contains(got, "deploy-all: build ") || !strings.Contains(got, "deploy-all: OK: 6 services healthy") {
				t.Fatalf("deploy-all.sh after deployAll: exit %d\n%s", code, got)
			}
			if n := strings.Count(got, "deploy-all: reuse "); n != 6 {
				t.Errorf("deploy-all.sh reused %d images, want 6:\n%s", n, got)
			}
			if after := containerIDs(t, ctx, p.Project); !equal(before, after) {
				t.Errorf("deploy-all.sh replaced containers: %v -> %v\n%s", before, after, got)
			}
			if again := probeServer(t, ctx, p.Project); again != probe {
				t.Errorf("testAll's probe server %q is gone after deploy-all.sh (now %q):\n%s", probe, again, got)
			}

			s2, out := open(t, p)
			deployAll(t, ctx, s2)
			if !strings.Contains(out.String(), "nothing to build") || !strings.Contains(out.String(), "nothing changed: 6 services") {
				t.Errorf("deployAll after deploy-all.sh was not a noop:\n%s", out)
			}
			if err := s2.Down(ctx, true); err != nil {
				t.Fatal(err)
			}
			assertNothingLeft(t, ctx, p.Project)
		})
	}
}

// probeServer is the ID of testAll's running probe server of project, ""
// when there is none.
func probeServer(t *testing.T, ctx context.Context, project string) string {
	t.Helper()
	out, err := exec.CommandContext(ctx, "docker", "ps", "-q", "--no-trunc",
		"--filter", "label="+labels.Probe+"="+project, "--filter", "label="+labels.ProbeMode+"=serve").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// DOCKER_HOST=ssh:// is refused for the local pipeline: compose v1 would
// reach it through paramiko, which accepts unknown host keys.
func TestLocalSSHDockerHostRefused(t *testing.T) {
	p := testenv.SamplePlatform(t, "sshhost")
	t.Setenv("DOCKER_HOST", "ssh://root@192.0.2.1")
	_, err := stack.Open(stack.Config{Catalog: p.Catalog})
	var ue *stack.UsageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "DOCKER_HOST=ssh://root@192.0.2.1") || !strings.Contains(err.Error(), "promote -env=") {
		t.Fatalf("err = %v, want a usage error pointing to a promoted environment", err)
	}
}

// A local DOCKER_HOST=tcp:// in plain text is refused (exit 2) unless it
// is loopback or TLS with verification: the stack's secrets would cross
// the network in clear.
func TestLocalPlainTCPDockerHostRefused(t *testing.T) {
	p := testenv.SamplePlatform(t, "tcphost")
	for _, c := range []struct {
		host, verify, certs string
		refused             bool
	}{
		{"tcp://192.0.2.1:2375", "", "", true},
		{"tcp://docker.example.internal:2375", "", "", true},
		{"tcp://192.0.2.1:2376", "", "/certs", true}, // a client that would not verify the daemon
		{"tcp://192.0.2.1:2376", "1", "", true},      // verification asked for, no certificates: compose v1 goes plain
		{"tcp://192.0.2.1:2376", "1", "/certs", false},
		{"tcp://127.0.0.1:2375", "", "", false},
		{"tcp://[::1]:2375", "", "", false},
	} {
		t.Setenv("DOCKER_HOST", c.host)
		t.Setenv("DOCKER_TLS_VERIFY", c.verify)
		t.Setenv("DOCKER_CERT_PATH", c.certs)
		_, err := stack.Open(stack.Config{Catalog: p.Catalog})
		var ue *stack.UsageError
		switch {
		case c.refused && (!errors.As(err, &ue) || !strings.Contains(err.Error(), "DOCKER_HOST="+c.host+" is plain-text tcp") ||
			!strings.Contains(err.Error(), "DOCKER_TLS_VERIFY=1")):
			t.Errorf("%+v: err = %v, want a usage error naming it and the fix", c, err)
		case !c.refused && err != nil:
			t.Errorf("%+v: refused: %v", c, err)
		}
	}
}

// Ports held by the stack's own containers are never blamed on the
// catalog: a container an interrupted compose left renamed (compose v1
// renames the old one while it recreates) is the service's own, and up
// goes on; a port the catalog moved to another service is held by this
// stack's own container, and the advice is to re-create the stack, not to
// change the catalog.
func TestPortHeldByTheStackItself(t *testing.T) {
	testenv.RequireDocker(t)
	testenv.RequireCommand(t, "docker-compose")
	ctx, cancel := testenv.Context(t)
	defer cancel()
	p := testenv.SamplePlatform(t, "ownport")
	s, _ := open(t, p)
	cleanup(t, s, p)
	deployAll(t, ctx, s)

	ids := containerIDs(t, ctx, p.Project)
	if out, err := exec.CommandContext(ctx, "docker", "rename", ids["quality-fabric"], "0a1b2c3d4e5f_"+p.Project+"_quality-fabric_1").CombinedOutput(); err != nil {
		t.Fatalf("rename: %v: %s", err, out)
	}
	edit(t, p.Catalog, `SERVICE_NAME = "quality-fabric"`, `SERVICE_NAME = "quality-fabric", NOTE = "changed"`)
	s2, out := open(t, p)
	for _, step := range []func(context.Context) error{s2.Render, s2.Up} {
		if err := step(ctx); err != nil {
			t.Fatalf("up with the port held by the service's own renamed container: %v\n%s", err, out)
		}
	}

	// Move quality-fabric's dev port to automation-service and give
	// quality-fabric a free one.
	qf, as := strconv.Itoa(p.DevPorts["quality-fabric"]), strconv.Itoa(p.DevPorts["automation-service"])
	free := strconv.Itoa(testenv.FreePorts(t, 1)[0])
	edit(t, p.Catalog, "dev_port = "+qf, "dev_port = "+free)
	edit(t, p.Catalog, "dev_port = "+as, "dev_port = "+qf)
	s3, out := open(t, p)
	if err := s3.Render(ctx); err != nil {
		t.Fatal(err)
	}
	err := s3.Up(ctx)
	var ue *stack.UsageError
	if err == nil || errors.As(err, &ue) || !strings.Contains(err.Error(), "this stack's own container of") ||
		!strings.Contains(err.Error(), "mage down") || strings.Contains(err.Error(), "services.toml") {
		t.Fatalf("up with ports swapped between services: %v\n%s", err, out)
	}
}

// edit replaces old with new in a file, once, and fails if old is not there.
func edit(t *testing.T, path, old, new string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("%s holds no %q", path, old)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// A one-shot service (a migration a dependant waits for with
// service_completed_successfully) runs once: up waits for it to exit 0,
// testAll and status count that as its health, and the next deployAll
// leaves it alone.
func TestOneShotService(t *testing.T) {
	testenv.RequireDocker(t)
	testenv.RequireCommand(t, "docker-compose")
	ctx, cancel := testenv.Context(t)
	defer cancel()
	p := testenv.SamplePlatform(t, "once")
	cat, _ := os.ReadFile(p.Catalog)
	text := strings.Replace(string(cat), `depends_on = ["state-store"]     # started after these are healthy`,
		`depends_on = { state-store = "service_healthy", migrate = "service_completed_successfully" }`, 1)
	// The sample binary exits 0 after printing its flags for -h: a job
	// that succeeds.
	text += `
[[services]]
name = "migrate"
source = "examples/maestro-platform/services/template-service"
prebuild = ["go", "build", "-trimpath", "-ldflags=-s -w", "-o", "app", "."]
prebuild_env = { CGO_ENABLED = "0", GOOS = "linux" }
prebuild_inputs = ["examples/maestro-platform/services/template-service", "examples/maestro-platform/internal"]
prebuild_outputs = ["app"]
compose = { command = ["-h"], restart = "no" }
`
	if !strings.Contains(text, `migrate = "service_completed_successfully"`) {
		t.Fatal("template-service's depends_on is not where the test expects it")
	}
	if err := os.WriteFile(p.Catalog, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	s, out := open(t, p)
	cleanup(t, s, p)
	deployAll(t, ctx, s)
	if row := summaryRow(t, out.String(), "migrate"); !strings.Contains(row, "completed (exit code 0)") {
		t.Errorf("summary row of the one-shot: %s", row)
	}
	if !regexp.MustCompile(`migrate +container +container +PASS .*completed \(exit code 0\)`).MatchString(out.String()) {
		t.Errorf("testAll does not count the completed job as healthy:\n%s", out)
	}
	s2, out2 := open(t, p)
	deployAll(t, ctx, s2)
	if !strings.Contains(out2.String(), "nothing changed: 7 services") {
		t.Errorf("second deployAll was not a noop with a completed job:\n%s", out2)
	}
	st, stOut := open(t, p)
	if err := st.Status(ctx); err != nil {
		t.Errorf("status with a completed job: %v\n%s", err, stOut)
	}
	// test-all.sh counts the job as testAll does: its container check, and
	// no health check of a server it is not.
	got, code := runScript(t, ctx, s, "test-all.sh")
	if code != 0 || !strings.Contains(got, "test-all: 18 checks: 18 PASS, 0 FAIL, 0 SKIP") {
		t.Errorf("test-all.sh with a completed job: exit %d\n%s", code, got)
	}
	if l := checkLine(got, "migrate", "container"); !strings.HasPrefix(l, "PASS") {
		t.Errorf("test-all.sh's container check of the job: %q\n%s", l, got)
	}
}

// A service's folder is used as the README says: `docker-compose up -d`
// there recreates nothing that did not change, touches no other service,
// and offers no orphans to remove. With compose v1 and v2, each on a stack
// it started itself (the two hash a service differently, so each replaces
// the other's containers anyway).
func TestServiceFolderTouchesNoOtherService(t *testing.T) {
	testenv.RequireDocker(t)
	testenv.RequireCommand(t, "docker-compose")
	v2 := testenv.ComposeV2(t)
	for _, cli := range []struct{ name, path string }{{"v1", "docker-compose"}, {"v2", v2}} {
		t.Run(cli.name, func(t *testing.T) {
			t.Setenv("DEPLOY_COMPOSE", cli.path)
			ctx, cancel := testenv.Context(t)
			defer cancel()
			p := testenv.SamplePlatform(t, "fold")
			s, _ := open(t, p)
			cleanup(t, s, p)
			deployAll(t, ctx, s)
			before := containerIDs(t, ctx, p.Project)
			for _, folder := range []string{"quality-fabric", "maestro-gateway", "infrastructure"} {
				argv := append(strings.Fields(cli.path), "up", "-d")
				cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
				cmd.Dir = filepath.Join(s.Dir, folder)
				out, err := cmd.CombinedOutput()
				if err != nil {
					t.Fatalf("%v in %s: %v\n%s", argv, folder, err, out)
				}
				if strings.Contains(strings.ToLower(string(out)), "orphan") {
					t.Errorf("up -d in %s warns of orphans:\n%s", folder, out)
				}
				if after := containerIDs(t, ctx, p.Project); !equal(before, after) {
					t.Errorf("up -d in %s changed containers: %v -> %v\n%s", folder, before, after, out)
					before = after
				}
			}
			// Still one stack: testAll passes on what the folders left.
			if s2, out := open(t, p); s2.TestAll(ctx) != nil {
				t.Errorf("testAll after up -d in the folders:\n%s", out)
			}
		})
	}
}
