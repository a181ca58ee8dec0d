package release_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/maestro-platform/deploy/tasks/check"
	"github.com/maestro-platform/deploy/tasks/exitcode"
	"github.com/maestro-platform/deploy/tasks/hostfs"
	"github.com/maestro-platform/deploy/tasks/labels"
	"github.com/maestro-platform/deploy/tasks/proxy"
	"github.com/maestro-platform/deploy/tasks/record"
	"github.com/maestro-platform/deploy/tasks/runtime"
	"github.com/maestro-platform/deploy/tasks/secrets"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"

	"github.com/maestro-platform/deploy/internal/testenv"
	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/maestro-platform/deploy/tasks/health"
	"github.com/maestro-platform/deploy/tasks/release"
	"github.com/maestro-platform/deploy/tasks/ui"
	"github.com/maestro-platform/deploy/tasks/ui/uitest"
)

// examples is the sample platform the test catalog builds from.
func examples(t testing.TB) string {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(wd, "..", "..", "examples", "maestro-platform")
}

const catalogTmpl = `
[project]
name = %[1]q
deploy_dir = %[2]q

[environments.dev]
ports = "dev"
bind = "127.0.0.1"

[environments.e2e]
ports = "e2e"
host = %[3]q
dir = %[4]q
known_hosts = %[5]q
identity = %[6]q
bind = ""
keep_releases = 2
health_timeout = "5m"

# A swarm that needs no IPVS in the kernel: DNS round robin inside the
# stack, ports bound on the node that runs the task.
[environments.sw]
ports = "sw"
engine = "swarm"
endpoint_mode = "dnsrr"
publish_mode = "host"
host = %[3]q
dir = %[7]q
known_hosts = %[5]q
identity = %[6]q
bind = ""
health_timeout = "5m"

# Swarm's defaults (virtual IPs, the ingress routing mesh): needs IPVS.
[environments.swvip]
ports = "sw"
engine = "swarm"
host = %[3]q
dir = %[15]q
known_hosts = %[5]q
identity = %[6]q
bind = ""
health_timeout = "5m"

# Two replicas: unpublished, so host-mode ports do not limit it to one per
# node; template-service's network check reaches it by name.
[[infrastructure]]
name = "state-store"
source = "%[8]s/infrastructure/state-store"
port = 6380
replicas = 2
healthcheck = ["/app", "-healthcheck"]
volumes = ["state-data:/data"]
prebuild = ["go", "build", "-trimpath", "-ldflags=-s -w", "-o", "app", "."]
prebuild_env = { CGO_ENABLED = "0", GOOS = "linux" }
prebuild_inputs = ["%[8]s/infrastructure/state-store", "%[8]s/internal"]
prebuild_outputs = ["app"]
env = { SERVICE_NAME = "state-store", PORT = "6380", DATA_DIR = "/data" }

[[services]]
name = "template-service"
source = "%[8]s/services/template-service"
port = 8005
dev_port = %[9]d
ports = { e2e = %[10]d, sw = %[11]d }
healthcheck = ["/app", "-healthcheck"]
depends_on = ["state-store"]
prebuild = ["go", "build", "-trimpath", "-ldflags=-s -w", "-o", "app", "."]
prebuild_env = { CGO_ENABLED = "0", GOOS = "linux" }
prebuild_inputs = ["%[8]s/services/template-service", "%[8]s/internal"]
prebuild_outputs = ["app"]
env = { SERVICE_NAME = "template-service", PORT = "8005", UPSTREAMS = "state-store=http://state-store:6380" }
secrets = { API_TOKEN = "dev-only-token" }   # a dev default: the remote value comes from API_TOKEN

  [[services.checks]]
  name = "reaches state-store"
  kind = "network"
  path = "/call/state-store"
  contains = "\"ok\":true"

[[services]]
name = "quality-fabric"
source = "%[8]s/quality-fabric"
port = 8000
dev_port = %[12]d
ports = { e2e = %[13]d, sw = %[14]d }
healthcheck = ["/app", "-healthcheck"]
depends_on = ["template-service"]
prebuild = ["go", "build", "-trimpath", "-ldflags=-s -w", "-o", "app", "."]
prebuild_env = { CGO_ENABLED = "0", GOOS = "linux" }
prebuild_inputs = ["%[8]s/quality-fabric", "%[8]s/internal"]
prebuild_outputs = ["app"]
env = { SERVICE_NAME = "quality-fabric", PORT = "8000", UPSTREAMS = "template-service=http://template-service:8005" }

  [[services.checks]]
  name = "health"
  json_field = "status"
  json_equals = "ok"
`

type fixture struct {
	t       testing.TB
	r       *testenv.Remote
	cat     *catalog.Catalog
	local   *engine.Engine
	remote  *client.Client
	project string
	deploy  string // local deployment folder (test record)
	state   string // build stamps
	ports   map[string]int
	out     bytes.Buffer
	clock   time.Time
}

func newFixture(t testing.TB) *fixture {
	testenv.RequireDocker(t)
	testenv.RequireCommand(t, "docker-compose")
	f := &fixture{t: t, r: testenv.StartRemote(t), project: testenv.ProjectName(t, "rel")}
	// The catalog's literal is a dev default, never used for a remote
	// environment: the remote value comes from the process environment.
	t.Setenv("API_TOKEN", "s3cret-release-token")
	tmp := t.TempDir()
	f.deploy = filepath.Join(tmp, "deployment")
	f.state = filepath.Join(tmp, "state")
	p := testenv.FreePorts(t, 6)
	src := fmt.Sprintf(catalogTmpl, f.project, f.deploy, f.r.Host, f.r.Dir, f.r.KnownHosts, f.r.Identity,
		filepath.Join(f.r.Root, "swarm-deploy"), examples(t), p[0], p[1], p[2], p[3], p[4], p[5],
		filepath.Join(f.r.Root, "swarm-vip"))
	file := filepath.Join(tmp, "services.toml")
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cat, err := catalog.Load(file)
	if err != nil {
		t.Fatalf("test catalog: %v", err)
	}
	f.cat = cat
	f.ports = map[string]int{"template-service": p[1], "quality-fabric": p[4], "sw/template-service": p[2], "sw/quality-fabric": p[5]}
	ctx := context.Background()
	f.local, err = engine.Connect(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.removeLocalImages() })
	f.remote, err = client.New(client.WithHost(f.r.Socket))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.remote.Close() })
	f.clock = time.Date(2026, 11, 27, 18, 0, 0, 0, time.UTC)
	return f
}

// opts returns promote options with a clock that moves a minute per call,
// so that every release gets its own id.
func (f *fixture) opts(env string) release.Options {
	f.clock = f.clock.Add(time.Minute)
	now := f.clock
	f.out.Reset()
	return release.Options{Env: env, Printer: ui.Plain(&f.out), LocalDeployDir: f.deploy, Now: func() time.Time { return now }}
}

// build builds every image of the catalog; labels vary one service's image.
func (f *fixture) build(ctx context.Context, labels map[string]map[string]string) map[string]string {
	f.t.Helper()
	var specs []engine.BuildSpec
	for _, s := range f.cat.All() {
		specs = append(specs, engine.BuildSpec{Service: s.Name, Context: s.Source, Dockerfile: s.Dockerfile,
			Repo: f.cat.ImageRepo(s), Prebuild: s.Prebuild, PrebuildEnv: s.PrebuildEnv,
			PrebuildInputs: s.PrebuildInputs, PrebuildOutputs: s.PrebuildOutputs, Labels: labels[s.Name]})
	}
	res, err := f.local.Build(ctx, specs, engine.BuildOptions{Parallel: 2, StateDir: f.state})
	if err != nil {
		f.t.Fatalf("build: %v", err)
	}
	ids := map[string]string{}
	for _, r := range res {
		ids[r.Service] = r.ImageID
	}
	return ids
}

// passTestAll records a passing testAll of the images now on :latest, as
// the testAll target would.
func (f *fixture) passTestAll(ctx context.Context) {
	f.t.Helper()
	key, err := record.Key(f.deploy)
	if err != nil {
		f.t.Fatal(err)
	}
	rec := record.Test{Env: "dev", Project: f.project, Images: map[string]string{},
		Config: record.Views(f.cat, key), Passed: true, At: time.Now()}
	for _, s := range f.cat.All() {
		id, err := f.local.ImageID(ctx, f.cat.ImageRef(s))
		if err != nil {
			f.t.Fatal(err)
		}
		rec.Images[s.Name] = id
	}
	if err := record.WriteTest(f.deploy, rec); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) removeLocalImages() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	list, err := f.local.API.ImageList(ctx, client.ImageListOptions{All: true})
	if err != nil {
		f.t.Logf("cleanup: %v", err)
		return
	}
	for _, img := range list.Items {
		for _, tag := range img.RepoTags {
			if strings.HasPrefix(tag, f.project+"/") {
				_, _ = f.local.API.ImageRemove(ctx, tag, client.ImageRemoveOptions{Force: true, PruneChildren: true})
			}
		}
	}
	f.local.Close()
}

func (f *fixture) current() string {
	target, err := os.Readlink(filepath.Join(f.r.Dir, "current"))
	if err != nil {
		return ""
	}
	return target
}

// running returns, per service, the image IDs of the project's running
// containers on the remote engine, and fails on any that is not healthy
// as the runner judges it (its own probe while the engine says starting).
func (f *fixture) running(ctx context.Context, t *testing.T) map[string][]string {
	t.Helper()
	list, err := health.Containers(ctx, &engine.Engine{API: f.remote, Host: f.remote.DaemonHost()}, f.project)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, c := range list {
		if c.Labels[labels.Probe] != "" || c.State != "running" {
			continue // testAll's probe; what no longer runs
		}
		if c.Health != "healthy" {
			t.Errorf("%s on the remote: %s, health %q, want healthy", c.Service, c.State, c.Health)
		}
		out[c.Service] = append(out[c.Service], c.ImageID)
	}
	return out
}

func (f *fixture) get(t *testing.T, port int, path string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://%s:%d%s", f.r.Addr, port, path))
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// load runs fn while a bounded load generator sends, over new connections
// and over keep-alive, to each port (the test host's address only), 100
// GETs and 50 POSTs a second, and returns what the generator saw. POST
// matters: the proxy retries a failed GET on another container, never a
// POST (see proxy.Drain).
func (f *fixture) load(t *testing.T, ports []int, fn func()) testenv.LoadStats {
	t.Helper()
	var gets, posts []string
	for _, p := range ports {
		gets = append(gets, fmt.Sprintf("http://%s:%d/health", f.r.Addr, p))
		posts = append(posts, fmt.Sprintf("http://%s:%d/log", f.r.Addr, p))
	}
	hosts := []string{f.r.Addr}
	return testenv.DuringAll(t, []testenv.LoadSpec{{Targets: gets, Hosts: hosts, Rate: 50},
		{Targets: posts, Hosts: hosts, Rate: 25, Method: http.MethodPost, Body: "load"}}, fn)
}

// containers returns the IDs of the project's service containers on the
// host, by service.
func (f *fixture) containers(ctx context.Context, t *testing.T) map[string][]string {
	t.Helper()
	list, err := f.remote.ContainerList(ctx, client.ContainerListOptions{All: true,
		Filters: client.Filters{}.Add("label", labels.ComposeProject+"="+f.project)})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, c := range list.Items {
		if c.Labels[labels.Probe] != "" {
			continue
		}
		svc := c.Labels[labels.ComposeService]
		out[svc] = append(out[svc], c.ID)
	}
	for _, ids := range out {
		slices.Sort(ids)
	}
	return out
}

func (f *fixture) published() []int {
	return []int{f.ports["template-service"], f.ports["quality-fabric"]}
}

func TestPromote(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := testenv.Context(t)
	defer cancel()
	ids := f.build(ctx, nil)

	t.Run("gate refuses without a passing testAll", func(t *testing.T) {
		_, err := release.Promote(ctx, f.cat, f.opts("e2e"))
		var ge *release.GateError
		if !errors.As(err, &ge) || !strings.Contains(err.Error(), "no testAll has been recorded") ||
			!strings.Contains(err.Error(), "mage testAll") || !strings.Contains(err.Error(), "-force") {
			t.Fatalf("err = %v, want a GateError saying no testAll was recorded, how to fix it, and that -force exists", err)
		}
		// A failed run, and a run of other images, are refused too.
		f.passTestAll(ctx)
		rec, _ := record.ReadTest(f.deploy)
		rec.Passed = false
		rec.Images["quality-fabric"] = "sha256:0123456789abcdef"
		if err := record.WriteTest(f.deploy, rec); err != nil {
			t.Fatal(err)
		}
		_, err = release.Promote(ctx, f.cat, f.opts("e2e"))
		if !errors.As(err, &ge) || !strings.Contains(err.Error(), "failed") ||
			!strings.Contains(err.Error(), "quality-fabric: image") {
			t.Fatalf("err = %v, want a refusal naming the failed run and quality-fabric's image", err)
		}
		if _, err := os.Stat(filepath.Join(f.r.Dir, "releases")); !os.IsNotExist(err) {
			t.Fatalf("a refused promote left releases/ on the host (%v)", err)
		}
	})

	t.Run("wrong host key is refused", func(t *testing.T) {
		f.passTestAll(ctx)
		other := filepath.Join(t.TempDir(), "k")
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", other).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v: %s", err, out)
		}
		pub, _ := os.ReadFile(other + ".pub")
		fields := strings.Fields(string(pub))
		wrong := filepath.Join(t.TempDir(), "known_hosts")
		line := fmt.Sprintf("[%s]:%d %s %s\n", f.r.Addr, f.r.SSHPort, fields[0], fields[1])
		if err := os.WriteFile(wrong, []byte(line), 0o600); err != nil {
			t.Fatal(err)
		}
		env := *f.cat.Environments["e2e"]
		env.Name, env.KnownHosts = "badkey", wrong
		f.cat.Environments["badkey"] = &env
		defer delete(f.cat.Environments, "badkey")
		_, err := release.Promote(ctx, f.cat, f.opts("badkey"))
		var hk *release.HostKeyError
		want := fmt.Sprintf("host key for %s:%d does not match %s", f.r.Addr, f.r.SSHPort, wrong)
		if !errors.As(err, &hk) || !hk.Changed || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "refusing") {
			t.Fatalf("err = %v, want %q ... refusing", err, want)
		}
		// An empty known_hosts: an unknown host is refused as well.
		if err := os.WriteFile(wrong, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err = release.Promote(ctx, f.cat, f.opts("badkey"))
		if !errors.As(err, &hk) || hk.Changed || !strings.Contains(err.Error(), "is not in "+wrong) {
			t.Fatalf("err = %v, want an unknown host key refusal", err)
		}
		if entries, _ := os.ReadDir(f.r.Dir); len(entries) != 0 {
			t.Fatalf("the host's folder changed after a refused connection: %v", entries)
		}
		imgs, err := f.remote.ImageList(ctx, client.ImageListOptions{})
		if err != nil || len(imgs.Items) != 0 {
			t.Fatalf("images reached the host after a refused connection: %v %v", imgs.Items, err)
		}
	})

	var first, second, third string
	t.Run("first promote ships every image and goes live behind the proxy", func(t *testing.T) {
		res, err := release.Promote(ctx, f.cat, f.opts("e2e"))
		if err != nil {
			t.Fatalf("promote: %v\n%s", err, f.out.String())
		}
		t.Logf("output:\n%s", f.out.String())
		first = res.Release
		if got := len(res.Transfer.Sent); got != 3 || res.Transfer.Bytes == 0 {
			t.Fatalf("sent %v (%d bytes), want all 3 images", res.Transfer.Sent, res.Transfer.Bytes)
		}
		if res.Checks == nil || res.Checks.Failed != 0 || res.Checks.Passed == 0 {
			t.Fatalf("checks: %+v", res.Checks)
		}
		if res.Changes.Count(runtime.Start) != 3 {
			t.Errorf("changes %s, want 3 started", res.Changes.Summary())
		}
		if got, want := f.current(), "releases/"+first; got != want {
			t.Fatalf("current -> %q, want %q", got, want)
		}
		compose, err := os.ReadFile(filepath.Join(f.r.Dir, "releases", first, "docker-compose.yml"))
		if err != nil {
			t.Fatal(err)
		}
		for svc, ref := range res.Images {
			if strings.HasSuffix(ref, ":latest") || !strings.Contains(string(compose), ref) {
				t.Errorf("%s: pinned %q, want an immutable tag named in the compose file", svc, ref)
			}
		}
		if strings.Contains(string(compose), "ports:") {
			t.Errorf("the release's services publish ports themselves; the proxy must:\n%s", compose)
		}
		if strings.Contains(string(compose), "s3cret-release-token") || strings.Contains(f.out.String(), "s3cret-release-token") {
			t.Error("a secret reached the compose file or the output")
		}
		run := f.running(ctx, t)
		for svc, id := range ids {
			if !slices.Equal(run[svc], []string{id}) {
				t.Errorf("%s runs %v on the host, want the tested %s", svc, run[svc], id)
			}
		}
		for _, svc := range []string{"quality-fabric", "template-service"} {
			if code, body := f.get(t, f.ports[svc], "/health"); code != 200 {
				t.Errorf("%s /health on the host: %d %s", svc, code, body)
			}
		}
		for _, want := range []string{"gate", "images", "sent 3 image(s)", "current", "is live"} {
			if !strings.Contains(f.out.String(), want) {
				t.Errorf("output lacks %q:\n%s", want, f.out.String())
			}
		}
	})
	if first == "" {
		t.FailNow()
	}

	t.Run("unchanged promote replaces nothing, sends nothing, fails no request, over one ssh connection", func(t *testing.T) {
		before := f.containers(ctx, t)
		channels := f.r.SSHChannels(t)
		var res *release.Result
		st := f.load(t, f.published(), func() {
			var err error
			if res, err = release.Promote(ctx, f.cat, f.opts("e2e")); err != nil {
				t.Fatalf("promote: %v\n%s", err, f.out.String())
			}
		})
		testenv.NoFailures(t, "unchanged promote", st)
		// One remote command (where the engine listens); every API
		// connection a forwarded channel of the same ssh connection, with
		// no process on the host.
		after := f.r.SSHChannels(t)
		sessions, forwarded := after["session"]-channels["session"], after["direct-streamlocal@openssh.com"]-channels["direct-streamlocal@openssh.com"]
		if sessions > 1 || forwarded == 0 || !strings.Contains(f.out.String(), "engine socket forwarded over one ssh connection") {
			t.Errorf("ssh sessions %d (want 1), forwarded connections %d (want some):\n%s", sessions, forwarded, f.out.String())
		}
		t.Logf("FIGURE unchanged promote: %d ssh session(s), %d API connection(s) over the forwarded socket", sessions, forwarded)
		second = res.Release
		if len(res.Transfer.Sent) != 0 || res.Transfer.Bytes != 0 || len(res.Transfer.Present) != 3 {
			t.Fatalf("transfer %+v, want nothing sent and 3 present", res.Transfer)
		}
		if res.Changes.Changed() {
			t.Errorf("changes: %s, want none", res.Changes.Summary())
		}
		if after := f.containers(ctx, t); !maps.EqualFunc(before, after, slices.Equal) {
			t.Errorf("containers changed: %v -> %v", before, after)
		}
		if res.Previous != first || f.current() != "releases/"+second {
			t.Fatalf("previous %q current %q", res.Previous, f.current())
		}
	})

	t.Run("plan says nothing would change", func(t *testing.T) {
		if _, err := release.Plan(ctx, f.cat, f.opts("e2e")); err != nil {
			t.Fatalf("plan: %v\n%s", err, f.out.String())
		}
		if !strings.Contains(f.out.String(), "up to date") {
			t.Errorf("plan output:\n%s", f.out.String())
		}
	})

	t.Run("one changed image replaces only its service, with no failed request", func(t *testing.T) {
		before := f.containers(ctx, t)
		ids = f.build(ctx, map[string]map[string]string{"quality-fabric": {"test.variant": f.project}})
		f.passTestAll(ctx)
		res, err := release.Plan(ctx, f.cat, f.opts("e2e"))
		if !errors.Is(err, release.ErrChanges) || !strings.Contains(f.out.String(), "quality-fabric") ||
			res.Send["quality-fabric"] == 0 || len(res.Send) != 1 {
			t.Fatalf("plan: %v, %+v\n%s", err, res, f.out.String())
		}
		var pr *release.Result
		st := f.load(t, f.published(), func() {
			if pr, err = release.Promote(ctx, f.cat, f.opts("e2e")); err != nil {
				t.Fatalf("promote: %v\n%s", err, f.out.String())
			}
		})
		testenv.NoFailures(t, "one-service promote", st)
		third = pr.Release
		// testAll's probe from the promotes before is no compose
		// container: compose v1 called it an orphan at every `up`.
		if strings.Contains(strings.ToLower(f.out.String()), "orphan") {
			t.Errorf("the promote's compose output speaks of orphans:\n%s", f.out.String())
		}
		if len(pr.Transfer.Sent) != 1 || !strings.HasPrefix(pr.Transfer.Sent[0], f.project+"/quality-fabric:") {
			t.Fatalf("sent %v, want only quality-fabric", pr.Transfer.Sent)
		}
		after := f.containers(ctx, t)
		for svc := range before {
			same := slices.Equal(before[svc], after[svc])
			if svc == "quality-fabric" && (same || len(after[svc]) != 1) || svc != "quality-fabric" && !same {
				t.Errorf("%s: containers %v -> %v; only quality-fabric's may be new", svc, before[svc], after[svc])
			}
		}
		if run := f.running(ctx, t); !slices.Equal(run["quality-fabric"], []string{ids["quality-fabric"]}) {
			t.Fatalf("quality-fabric runs %v, want the new %s", run["quality-fabric"], ids["quality-fabric"])
		}
		// keep_releases = 2: the first release goes, the previous stays.
		if !slices.Equal(pr.Pruned, []string{first}) {
			t.Fatalf("pruned %v, want [%s]", pr.Pruned, first)
		}
		if _, err := os.Stat(filepath.Join(f.r.Dir, "releases", first)); !os.IsNotExist(err) {
			t.Fatalf("pruned release still on the host: %v", err)
		}
	})
	if third == "" {
		t.FailNow()
	}

	t.Run("plan names the service and key of a changed env value", func(t *testing.T) {
		ts, _ := f.cat.Service("template-service")
		ts.Env["LOG_LEVEL"] = "debug"
		defer delete(ts.Env, "LOG_LEVEL")
		_, err := release.Plan(ctx, f.cat, f.opts("e2e"))
		if !errors.Is(err, release.ErrChanges) || !strings.Contains(f.out.String(), "template-service") ||
			!strings.Contains(f.out.String(), "env.LOG_LEVEL") {
			t.Fatalf("plan: %v\n%s", err, f.out.String())
		}
	})

	t.Run("a release failing its health gate rolls back with no failed request", func(t *testing.T) {
		before := f.containers(ctx, t)
		qf, _ := f.cat.Service("quality-fabric")
		qf.Env["FAIL_HEALTH"] = "1"
		defer delete(qf.Env, "FAIL_HEALTH")
		o := f.opts("e2e")
		o.Force = true
		var err error
		st := f.load(t, f.published(), func() { _, err = release.Promote(ctx, f.cat, o) })
		testenv.NoFailures(t, "failing release", st)
		var re *release.Error
		if !errors.As(err, &re) || !re.Restored || re.Previous != third {
			t.Fatalf("err = %v, want a release.Error with %s restored\n%s", err, third, f.out.String())
		}
		for _, want := range []string{"FORCED", "rolled back", third, "not healthy: quality-fabric"} {
			if !strings.Contains(f.out.String()+err.Error(), want) {
				t.Errorf("output and error lack %q:\n%s\n%v", want, f.out.String(), err)
			}
		}
		if got := f.current(); got != "releases/"+third {
			t.Fatalf("current -> %q after a failed release, want releases/%s", got, third)
		}
		if after := f.containers(ctx, t); !maps.EqualFunc(before, after, slices.Equal) {
			t.Errorf("containers changed by a release that never went live: %v -> %v", before, after)
		}
		entries, _ := os.ReadDir(filepath.Join(f.r.Dir, "releases"))
		if len(entries) != 2 {
			t.Fatalf("releases on the host: %v, want the failed one removed", entries)
		}
	})

	t.Run("releases lists them with current marked", func(t *testing.T) {
		rels, err := release.Releases(ctx, f.cat, f.opts("e2e"))
		if err != nil {
			t.Fatal(err)
		}
		if len(rels) != 2 || rels[0].ID != second || rels[1].ID != third || rels[0].Current || !rels[1].Current || !rels[0].Recorded {
			t.Fatalf("releases %+v, want [%s, %s*], recorded", rels, second, third)
		}
		if rels[1].At.IsZero() || !strings.Contains(f.out.String(), "current") {
			t.Fatalf("release time %v, output:\n%s", rels[1].At, f.out.String())
		}
	})

	t.Run("doctor -env finds the host ready, each port held by the proxy, and names a port another container holds", func(t *testing.T) {
		if err := release.Doctor(ctx, f.cat, f.opts("e2e")); err != nil {
			t.Fatalf("doctor: %v\n%s", err, f.out.String())
		}
		out := f.out.String()
		for _, want := range []string{"Docker Engine ", ", used as root", "here drives the engine", " free of ", "(the engine's data root)", "clock", "is ready for `mage promote -env=e2e`",
			fmt.Sprintf("port %d  template-service: held by this project's proxy", f.ports["template-service"])} {
			if !strings.Contains(strings.Join(strings.Fields(out), " "), strings.Join(strings.Fields(want), " ")) {
				t.Errorf("doctor output lacks %q:\n%s", want, out)
			}
		}
		// Another environment of the catalog, whose port a foreign
		// container holds on the host.
		env := *f.cat.Environments["e2e"]
		env.Name, env.Ports, env.Dir = "doctorbad", "dev", filepath.Join(f.r.Root, "doctor-bad")
		f.cat.Environments[env.Name] = &env
		defer delete(f.cat.Environments, env.Name)
		ts, _ := f.cat.Service("template-service")
		img := f.running(ctx, t)["quality-fabric"][0]
		foreign, err := f.remote.ContainerCreate(ctx, client.ContainerCreateOptions{Name: f.project + "-doctor-foreign",
			Config:     &container.Config{Image: img, ExposedPorts: network.PortSet{network.MustParsePort("8080/tcp"): {}}},
			HostConfig: &container.HostConfig{PortBindings: network.PortMap{network.MustParsePort("8080/tcp"): {{HostPort: strconv.Itoa(ts.DevPort)}}}}})
		if err != nil {
			t.Fatal(err)
		}
		defer f.remote.ContainerRemove(context.Background(), foreign.ID, client.ContainerRemoveOptions{Force: true})
		if _, err := f.remote.ContainerStart(ctx, foreign.ID, client.ContainerStartOptions{}); err != nil {
			t.Fatal(err)
		}
		err = release.Doctor(ctx, f.cat, f.opts(env.Name))
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("port %d", ts.DevPort)) ||
			!strings.Contains(f.out.String(), "held by container "+f.project+"-doctor-foreign") {
			t.Errorf("doctor with a port held by another container: %v\n%s", err, f.out.String())
		}
	})

	t.Run("status shows each container, its release and the proxy, and names a stopped one", func(t *testing.T) {
		rows, err := release.Status(ctx, f.cat, f.opts("e2e"))
		if err != nil {
			t.Fatalf("status: %v\n%s", err, f.out.String())
		}
		got := map[string]release.StatusRow{}
		for _, r := range rows {
			got[r.Service] = r
		}
		for _, s := range f.cat.All() {
			if r, ok := got[s.Name]; !ok || !r.Healthy || r.Release != third || r.Image == "" || r.Node != "" {
				t.Errorf("%s: row %+v, want healthy, release %s, an image and no node", s.Name, r, third)
			}
		}
		if r := got[release.ProxyRow]; !r.Healthy || r.Image == "" {
			t.Errorf("proxy row %+v, want it running", r)
		}
		if out := f.out.String(); !strings.Contains(out, "current release "+third) || !strings.Contains(out, third+" (current)") ||
			!strings.Contains(out, "3 services and the proxy running and healthy on e2e") {
			t.Errorf("status output:\n%s", out)
		}
		id := f.containers(ctx, t)["template-service"][0]
		if _, err := f.remote.ContainerStop(ctx, id, client.ContainerStopOptions{}); err != nil {
			t.Fatal(err)
		}
		before := f.containers(ctx, t)
		rows, err = release.Status(ctx, f.cat, f.opts("e2e"))
		if err == nil || !strings.Contains(err.Error(), "not running and healthy on e2e: template-service (exited") {
			t.Errorf("status with template-service stopped: %v, want it named", err)
		}
		for _, r := range rows {
			if r.Service == "template-service" && (r.Healthy || !strings.HasPrefix(r.State, "exited")) {
				t.Errorf("stopped template-service's row: %+v", r)
			}
		}
		// testAll -env sees it too, and records nothing.
		gate, _ := record.ReadTest(f.deploy)
		if _, err := release.TestAll(ctx, f.cat, f.opts("e2e")); err == nil || !strings.Contains(err.Error(), "template-service") {
			t.Errorf("testAll -env with template-service stopped: %v, want it named", err)
		}
		if after := f.containers(ctx, t); !maps.EqualFunc(before, after, slices.Equal) {
			t.Errorf("status and testAll -env changed the host's containers: %v -> %v", before, after)
		}
		if _, err := f.remote.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
			t.Fatal(err)
		}
		for {
			if _, err = release.Status(ctx, f.cat, f.opts("e2e")); err == nil || ctx.Err() != nil {
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("template-service never came back after its start: %v", err)
		}
		rep, err := release.TestAll(ctx, f.cat, f.opts("e2e"))
		if err != nil || rep.Failed != 0 || rep.Passed == 0 || !strings.Contains(f.out.String(), fmt.Sprintf("%d checks passed on e2e", rep.Passed)) {
			t.Errorf("testAll -env: %v, report %+v\n%s", err, rep, f.out.String())
		}
		if now, _ := record.ReadTest(f.deploy); !reflect.DeepEqual(gate, now) {
			t.Errorf("testAll -env wrote the gate's record: %+v -> %+v", gate, now)
		}
	})

	t.Run("logs -f streams a line written after it started, services side by side, secrets hidden", func(t *testing.T) {
		var out uitest.Buffer
		o := f.opts("e2e")
		o.Printer = ui.Plain(&out)
		lctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		var lerr error
		go func() {
			defer close(done)
			lerr = release.Logs(lctx, f.cat, o, []string{"template-service", "quality-fabric"}, engine.LogOptions{Tail: 5, Follow: true})
		}()
		// What was printed before it started comes first, prefixed.
		out.WaitFor(t, "template-service | ", done)
		out.WaitFor(t, "quality-fabric   | ", done)
		mark := "after-the-start-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		if code := f.post(t, f.ports["quality-fabric"], "/log", mark+" s3cret-release-token"); code != 204 {
			t.Fatalf("POST /log: %d", code)
		}
		got := out.WaitFor(t, mark, done)
		// A container of the service that starts later is followed too,
		// from its first line.
		late, err := f.remote.ContainerCreate(ctx, client.ContainerCreateOptions{Name: f.project + "-late-quality-fabric",
			Config: &container.Config{Image: f.running(ctx, t)["quality-fabric"][0], Env: []string{"SERVICE_NAME=late-" + mark},
				Labels: map[string]string{labels.ComposeProject: f.project, labels.ComposeService: "quality-fabric"}},
			HostConfig: &container.HostConfig{NetworkMode: "none"}})
		if err != nil {
			t.Fatal(err)
		}
		defer f.remote.ContainerRemove(context.Background(), late.ID, client.ContainerRemoveOptions{Force: true})
		if _, err := f.remote.ContainerStart(ctx, late.ID, client.ContainerStartOptions{}); err != nil {
			t.Fatal(err)
		}
		late2 := out.WaitFor(t, "late-"+mark+" listening", done)
		if !regexp.MustCompile(`(?m)^quality-fabric   \| .*late-` + mark + ` listening`).MatchString(late2) {
			t.Errorf("the later container's line is not quality-fabric's:\n%s", late2)
		}
		if _, err := f.remote.ContainerRemove(ctx, late.ID, client.ContainerRemoveOptions{Force: true}); err != nil {
			t.Fatal(err)
		}
		stop()
		<-done
		if lerr != nil {
			t.Errorf("logs -f ended with %v", lerr)
		}
		if !regexp.MustCompile(`(?m)^quality-fabric   \| .*note: ` + mark + ` \*\*\*$`).MatchString(got) {
			t.Errorf("the new line is not quality-fabric's, with the secret hidden:\n%s", got)
		}
		if strings.Contains(out.String(), "s3cret-release-token") {
			t.Errorf("a secret reached the logs:\n%s", out.String())
		}
		// A service the catalog lacks is refused by the target (stack.LogServices);
		// one without a container on the host is named.
		err = release.Logs(ctx, f.cat, f.opts("e2e"), []string{"no-such"}, engine.LogOptions{Tail: 1})
		if err == nil || !strings.Contains(err.Error(), "no-such has no container") {
			t.Errorf("logs of a service with no container: %v", err)
		}
	})

	t.Run("a tampered release on the host is refused, not rolled back to", func(t *testing.T) {
		// Someone with write access to the host's folder adds a file-based
		// secret to the previous release: docker would read that file on
		// the operator's machine.
		p := filepath.Join(f.r.Dir, "releases", second, "docker-compose.yml")
		orig, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		evil := string(orig) + "secrets:\n  k:\n    file: /root/.ssh/id_ed25519\n"
		if err := os.WriteFile(p, []byte(evil), 0o644); err != nil {
			t.Fatal(err)
		}
		defer os.WriteFile(p, orig, 0o644)
		before := f.containers(ctx, t)
		err = release.Rollback(ctx, f.cat, f.opts("e2e"))
		var te *record.TamperedError
		if !errors.As(err, &te) || !strings.Contains(err.Error(), "docker-compose.yml: changed on the host") {
			t.Fatalf("rollback to a tampered release: %v\n%s", err, f.out.String())
		}
		if after := f.containers(ctx, t); !maps.EqualFunc(before, after, slices.Equal) || f.current() != "releases/"+third {
			t.Errorf("a refused rollback changed the host: containers %v -> %v, current %s", before, after, f.current())
		}
	})

	t.Run("rollback goes to the previous release with no failed request", func(t *testing.T) {
		before := f.containers(ctx, t)
		var err error
		st := f.load(t, f.published(), func() { err = release.Rollback(ctx, f.cat, f.opts("e2e")) })
		if err != nil {
			t.Fatalf("rollback: %v\n%s", err, f.out.String())
		}
		testenv.NoFailures(t, "rollback", st)
		if got := f.current(); got != "releases/"+second {
			t.Fatalf("current -> %q, want releases/%s", got, second)
		}
		after := f.containers(ctx, t)
		for svc := range before {
			same := slices.Equal(before[svc], after[svc])
			if svc == "quality-fabric" && same || svc != "quality-fabric" && !same {
				t.Errorf("%s: containers %v -> %v; only quality-fabric's image differs between the releases", svc, before[svc], after[svc])
			}
		}
		run := f.running(ctx, t)
		qf, _ := f.cat.Service("quality-fabric")
		old, err := f.local.API.ImageInspect(ctx, pinnedRef(f, qf))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(run["quality-fabric"], []string{old.ID}) {
			t.Fatalf("quality-fabric runs %v after rollback, want the earlier image %s", run["quality-fabric"], old.ID)
		}
		// Nothing live before the release now running: a clear refusal.
		err = release.Rollback(ctx, f.cat, f.opts("e2e"))
		if err == nil || !strings.Contains(err.Error(), "none to go back to") {
			t.Fatalf("second rollback: %v, want a refusal", err)
		}

		// promote -release goes forward again to the release rolled back
		// from, exactly as shipped, with no failed request.
		o := f.opts("e2e")
		o.Release = "no-such-release"
		if err := release.Rollback(ctx, f.cat, o); err == nil || !strings.Contains(err.Error(), "no release no-such-release is kept") {
			t.Errorf("promote -release of an unknown release: %v", err)
		}
		o = f.opts("e2e")
		o.Release = third
		st = f.load(t, f.published(), func() { err = release.Rollback(ctx, f.cat, o) })
		if err != nil {
			t.Fatalf("promote -release=%s: %v\n%s", third, err, f.out.String())
		}
		testenv.NoFailures(t, "promote -release", st)
		if got := f.current(); got != "releases/"+third {
			t.Fatalf("current -> %q after promote -release, want releases/%s", got, third)
		}
		if again := f.containers(ctx, t); !slices.Equal(again["template-service"], after["template-service"]) || slices.Equal(again["quality-fabric"], after["quality-fabric"]) {
			t.Errorf("promote -release replaced %v -> %v; only quality-fabric differs", after, again)
		}
		recs, err := release.History(ctx, f.cat, f.opts("e2e"), true)
		if err != nil || recs[len(recs)-1].Action != release.ActionRelease || recs[len(recs)-1].Release != third || recs[len(recs)-1].Outcome != release.OutcomeLive {
			t.Errorf("the audit log's last record is not the promote -release: %v %+v", err, recs[len(recs)-1:])
		}
	})

	t.Run("one promotion at a time: a second is refused, naming the holder", func(t *testing.T) {
		f.passTestAll(ctx)
		// Two at once: exactly one proceeds.
		errs := make(chan error, 2)
		for range 2 {
			o := f.opts("e2e")
			o.Force = true
			o.Printer = ui.Plain(io.Discard)
			// A catalog each, as two processes would have.
			cat, err := catalog.Load(f.cat.File)
			if err != nil {
				t.Fatal(err)
			}
			go func() { _, err := release.Promote(ctx, cat, o); errs <- err }()
		}
		var busy []error
		for range 2 {
			if err := <-errs; err != nil {
				busy = append(busy, err)
			}
		}
		var be *hostfs.BusyError
		if len(busy) != 1 || !errors.As(busy[0], &be) || !strings.Contains(busy[0].Error(), "is locked by") ||
			be.Holder.PID != os.Getpid() || be.Holder.Command != "promote" {
			t.Fatalf("two promotes at once: errors %v, want exactly one refusal naming the other", busy)
		}
		// With -wait, the second waits for the first and then proceeds.
		release2, err := release.HoldLock(ctx, f.cat, f.cat.Environments["e2e"])
		if err != nil {
			t.Fatal(err)
		}
		o := f.opts("e2e")
		o.Wait = true
		out := &uitest.Buffer{}
		o.Printer = ui.Plain(out)
		done := make(chan error, 1)
		go func() { _, err := release.Promote(ctx, f.cat, o); done <- err }()
		for !strings.Contains(out.String(), "waiting for") {
			time.Sleep(20 * time.Millisecond)
		}
		release2()
		if err := <-done; err != nil {
			t.Fatalf("promote -wait: %v\n%s", err, out.String())
		}
	})

	t.Run("the lock of a killed holder is taken over", func(t *testing.T) {
		child := exec.Command(os.Args[0], "-test.run=^TestHelperHoldLock$")
		child.Env = append(os.Environ(), "MAESTRO_TEST_HOLD_LOCK="+f.cat.File)
		stdout, err := child.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		child.Stderr = os.Stderr
		if err := child.Start(); err != nil {
			t.Fatal(err)
		}
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		if strings.TrimSpace(line) != "held" {
			child.Process.Kill()
			t.Fatalf("the holder process said %q", line)
		}
		if _, err := release.Promote(ctx, f.cat, f.opts("e2e")); err == nil {
			t.Fatal("a promote went ahead while another process held the lock")
		}
		_ = child.Process.Kill() // SIGKILL: no release, its session just ends
		_ = child.Wait()
		var res *release.Result
		for i := 0; ; i++ {
			res, err = release.Promote(ctx, f.cat, f.opts("e2e"))
			var be *hostfs.BusyError
			if !errors.As(err, &be) || i == 50 {
				break
			}
			time.Sleep(100 * time.Millisecond) // the host notices the session's end
		}
		if err != nil || !strings.Contains(f.out.String(), "took over the lock of") {
			t.Fatalf("promote after the holder was killed: %v\n%s", err, f.out.String())
		}
		_ = res
	})

	t.Run("a rotated secret replaces only its users, with no failed request", func(t *testing.T) {
		before := f.containers(ctx, t)
		t.Setenv("API_TOKEN", "r0tated-marker-token")
		var res *release.Result
		var err error
		st := f.load(t, f.published(), func() { res, err = release.Promote(ctx, f.cat, f.opts("e2e")) })
		if err != nil {
			t.Fatalf("promote: %v\n%s", err, f.out.String())
		}
		testenv.NoFailures(t, "secret rotation", st)
		if s := res.Changes.Summary(); s != "1 replaced (template-service), 2 unchanged" {
			t.Errorf("changes %s, want template-service (the secret's only user) alone replaced", s)
		}
		after := f.containers(ctx, t)
		for svc := range before {
			if same := slices.Equal(before[svc], after[svc]); same == (svc == "template-service") {
				t.Errorf("%s: containers %v -> %v", svc, before[svc], after[svc])
			}
		}
		if code := f.post(t, f.ports["template-service"], "/secret/API_TOKEN", "r0tated-marker-token"); code != 204 {
			t.Errorf("template-service does not have the rotated value: %d", code)
		}
		f.noLeak(ctx, t, "r0tated-marker-token")
		f.noLeak(ctx, t, "s3cret-release-token")
	})

	t.Run("a missing secret stops a promote before anything changes", func(t *testing.T) {
		before := f.containers(ctx, t)
		rels, _ := os.ReadDir(filepath.Join(f.r.Dir, "releases"))
		// No value outside the catalog: the dev default must not be used
		// for a remote environment. A secrets file others may read is
		// refused too.
		t.Setenv("API_TOKEN", "")
		_, err := release.Promote(ctx, f.cat, f.opts("e2e"))
		var me *secrets.MissingError
		if !errors.As(err, &me) || !strings.Contains(err.Error(), "API_TOKEN") || !strings.Contains(err.Error(), "e2e") ||
			!strings.Contains(err.Error(), "not used for remote") || exitcode.Of(err) != exitcode.Usage {
			t.Fatalf("promote without the secret: %v (exit %d)", err, exitcode.Of(err))
		}
		file := filepath.Join(filepath.Dir(f.cat.File), ".maestro", "secrets", "e2e.env")
		if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, []byte("API_TOKEN=from-a-shared-file\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(file)
		_, err = release.Promote(ctx, f.cat, f.opts("e2e"))
		if err == nil || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), "chmod 600") ||
			strings.Contains(err.Error(), "from-a-shared-file") {
			t.Fatalf("promote with a 0644 secrets file: %v", err)
		}
		after, _ := os.ReadDir(filepath.Join(f.r.Dir, "releases"))
		if !maps.EqualFunc(before, f.containers(ctx, t), slices.Equal) || len(after) != len(rels) {
			t.Errorf("a refused promote changed the host")
		}
		// From the file, once it is private.
		if err := os.Chmod(file, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := release.Plan(ctx, f.cat, f.opts("e2e")); err != nil && !errors.Is(err, release.ErrChanges) {
			t.Fatalf("plan with the value in a private secrets file: %v", err)
		}
	})

	t.Run("every promotion and rollback is in the audit log", func(t *testing.T) {
		recs, err := release.History(ctx, f.cat, f.opts("e2e"), false)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("history:\n%s", f.out.String())
		count := map[string]int{}
		for _, a := range recs {
			count[a.Action+" "+a.Outcome]++
			if a.User == "" || a.Env != "e2e" || a.DurationMS <= 0 {
				t.Errorf("incomplete record %+v", a)
			}
			if a.Action == "promote" && a.Outcome == "live" && (len(a.Images) != 3 || a.TestRecord == "" || a.Release == "") {
				t.Errorf("a live promote's record lacks its images, test record or release: %+v", a)
			}
		}
		forced, tookOver := false, false
		for _, a := range recs {
			forced = forced || a.Forced && a.Outcome == "rolled back"
			tookOver = tookOver || a.TookOver != ""
		}
		// The killed lock holder wrote no record; the promote that took
		// its lock over wrote it, once.
		if count["promote live"] < 5 || count["promote rolled back"] != 1 || count["rollback live"] != 1 || !forced || !tookOver ||
			count["promote "+release.OutcomeInterrupted] != 1 {
			t.Errorf("audit log counts %v (forced failed release: %v, took over: %v)", count, forced, tookOver)
		}
		for _, want := range []string{"TIME", "promote", "rollback", "rolled back", "forced"} {
			if !strings.Contains(f.out.String(), want) {
				t.Errorf("history table lacks %q", want)
			}
		}
		o := f.opts("e2e")
		if _, err := release.History(ctx, f.cat, o, true); err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(f.out.String(), "\n"); n != len(recs) || !strings.HasPrefix(f.out.String(), `{"time":`) {
			t.Errorf("history -json: %d lines for %d records:\n%s", n, len(recs), f.out.String())
		}
	})

	t.Run("down -env takes the stack and proxy off, keeps releases and log, and a promote starts it again", func(t *testing.T) {
		cur := f.current()
		kept, _ := os.ReadDir(filepath.Join(f.r.Dir, "releases"))
		if err := release.Down(ctx, f.cat, f.opts("e2e"), false); err != nil {
			t.Fatalf("down: %v\n%s", err, f.out.String())
		}
		if !strings.Contains(f.out.String(), "is down on e2e") {
			t.Errorf("down output:\n%s", f.out.String())
		}
		if cs := f.containers(ctx, t); len(cs) != 0 {
			t.Errorf("containers left after down: %v", cs)
		}
		for _, filter := range []client.Filters{
			client.Filters{}.Add("label", labels.Proxy+"="+f.project),
			client.Filters{}.Add("label", labels.ComposeProject+"="+f.project),
		} {
			if cs, err := f.remote.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: filter}); err != nil || len(cs.Items) != 0 {
				t.Errorf("containers %v left (%v)", cs.Items, err)
			}
			if ns, err := f.remote.NetworkList(ctx, client.NetworkListOptions{Filters: filter}); err != nil || len(ns.Items) != 0 {
				t.Errorf("networks %v left (%v)", ns.Items, err)
			}
		}
		if got, _ := os.ReadDir(filepath.Join(f.r.Dir, "releases")); len(got) != len(kept) || f.current() != cur {
			t.Errorf("down changed the releases: %d -> %d, current %s -> %s", len(kept), len(got), cur, f.current())
		}
		recs, err := release.History(ctx, f.cat, f.opts("e2e"), true)
		if err != nil || len(recs) == 0 || recs[len(recs)-1].Action != "down" || recs[len(recs)-1].Outcome != release.OutcomeDown {
			t.Errorf("the audit log's last record is not the down: %v %+v", err, recs[len(recs)-1:])
		}
		if _, err := release.Status(ctx, f.cat, f.opts("e2e")); err == nil || !strings.Contains(err.Error(), "template-service (no container)") {
			t.Errorf("status after down: %v, want every service missing", err)
		}
		f.passTestAll(ctx)
		res, err := release.Promote(ctx, f.cat, f.opts("e2e"))
		if err != nil {
			t.Fatalf("promote after down: %v\n%s", err, f.out.String())
		}
		if n := res.Changes.Count(runtime.Start); n != 3 {
			t.Errorf("promote after down: %s, want 3 started", res.Changes.Summary())
		}
		for _, port := range f.published() {
			if code, body := f.get(t, port, "/health"); code != 200 {
				t.Errorf("port %d after down and promote: %d %s", port, code, body)
			}
		}
	})

	t.Run("prune removes the images no kept release uses, and only those", func(t *testing.T) {
		// An image of a service's repository that no release names: made
		// on the host from a running container of it.
		qf, _ := f.cat.Service("quality-fabric")
		stale := f.cat.ImageRepo(qf) + ":stale-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		id := f.containers(ctx, t)["quality-fabric"][0]
		if _, err := f.remote.ContainerCommit(ctx, id, client.ContainerCommitOptions{Reference: stale, NoPause: true}); err != nil {
			t.Fatal(err)
		}
		res, err := release.Prune(ctx, f.cat, f.opts("e2e"))
		if err != nil {
			t.Fatalf("prune: %v\n%s", err, f.out.String())
		}
		if !slices.Contains(res.Images, stale) || res.Freed < 0 {
			t.Errorf("prune removed %v (freed %d), want %s among them\n%s", res.Images, res.Freed, stale, f.out.String())
		}
		if _, err := f.remote.ImageInspect(ctx, stale); !engine.IsNotFound(err) {
			t.Errorf("%s is still on the host: %v", stale, err)
		}
		// Every kept release can still run: its images are all there.
		kept, _ := os.ReadDir(filepath.Join(f.r.Dir, "releases"))
		for _, e := range kept {
			rec, _, err := record.LoadRelease(f.deploy, "e2e", e.Name())
			if err != nil {
				t.Fatalf("kept release %s has no record here: %v", e.Name(), err)
			}
			for svc, img := range rec.ImageIDs {
				if _, err := f.remote.ImageInspect(ctx, img); err != nil {
					t.Errorf("prune removed %s's image %s of kept release %s: %v", svc, img, e.Name(), err)
				}
			}
		}
		res, err = release.Prune(ctx, f.cat, f.opts("e2e"))
		if err != nil || len(res.Images) != 0 || !strings.Contains(f.out.String(), "nothing to remove") {
			t.Errorf("second prune: %v, removed %v\n%s", err, res, f.out.String())
		}

		// A promote that drops old releases prunes the images nothing
		// kept uses any more.
		stale = f.cat.ImageRepo(qf) + ":stale-promote"
		id = f.containers(ctx, t)["quality-fabric"][0]
		if _, err := f.remote.ContainerCommit(ctx, id, client.ContainerCommitOptions{Reference: stale, NoPause: true}); err != nil {
			t.Fatal(err)
		}
		env := f.cat.Environments["e2e"]
		defer func(keep int) { env.KeepReleases = keep }(env.KeepReleases)
		env.KeepReleases = 2
		o := f.opts("e2e")
		o.Force = true
		pr, err := release.Promote(ctx, f.cat, o)
		if err != nil {
			t.Fatalf("promote: %v\n%s", err, f.out.String())
		}
		if len(pr.Pruned) == 0 || !strings.Contains(f.out.String(), stale) {
			t.Errorf("a promote that pruned releases %v did not prune %s:\n%s", pr.Pruned, stale, f.out.String())
		}
		if _, err := f.remote.ImageInspect(ctx, stale); !engine.IsNotFound(err) {
			t.Errorf("%s is still on the host after the promote: %v", stale, err)
		}
	})

	t.Run("interrupted anywhere, the next run converges", func(t *testing.T) {
		f.interrupts(ctx, t)
	})

	t.Run("the host's engine restarts: the live release comes back by itself", func(t *testing.T) {
		f.engineRestart(ctx, t)
	})

	t.Run("swarm", func(t *testing.T) {
		f.swarm(ctx, t)
	})
}

// engineRestart restarts the host's engine under the live release: its
// containers and the proxy come back by themselves (restart policy), the
// same containers, serving again; current has not moved, releases marks
// it, and testAll's checks against the host pass.
func (f *fixture) engineRestart(ctx context.Context, t *testing.T) {
	cur := f.current()
	before := f.containers(ctx, t)
	if cur == "" || len(before) == 0 {
		t.Fatalf("nothing live to restart under: current %q, containers %v", cur, before)
	}
	f.r.RestartEngine(t)

	// Back means: every container of the release healthy and each
	// published port answering through the proxy. The bound only ends a
	// test that would otherwise wait forever.
	c := &http.Client{Timeout: 2 * time.Second}
	back := func() error {
		list, err := health.Containers(ctx, &engine.Engine{API: f.remote, Host: f.remote.DaemonHost()}, f.project)
		if err != nil {
			return err
		}
		for _, ct := range list {
			if ct.Labels[labels.Probe] == "" && (ct.State != "running" || ct.Health != "healthy") {
				return fmt.Errorf("%s: %s, health %q", ct.Service, ct.State, ct.Health)
			}
		}
		for _, port := range f.published() {
			resp, err := c.Get(fmt.Sprintf("http://%s:%d/health", f.r.Addr, port))
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("port %d: status %d", port, resp.StatusCode)
			}
		}
		return nil
	}
	var err error
	for end := time.Now().Add(10 * time.Minute); ; time.Sleep(500 * time.Millisecond) {
		if err = back(); err == nil || time.Now().After(end) {
			break
		}
	}
	if err != nil {
		t.Fatalf("the live release did not come back after the engine restarted: %v", err)
	}
	if after := f.containers(ctx, t); !maps.EqualFunc(before, after, slices.Equal) {
		t.Errorf("containers %v -> %v: the restart policy should have brought the same ones back", before, after)
	}
	if got := f.current(); got != cur {
		t.Errorf("current moved from %s to %s", cur, got)
	}
	rels, err := release.Releases(ctx, f.cat, f.opts("e2e"))
	if err != nil {
		t.Fatalf("releases after the restart: %v\n%s", err, f.out.String())
	}
	var marked []string
	for _, r := range rels {
		if r.Current {
			marked = append(marked, "releases/"+r.ID)
		}
	}
	if !slices.Equal(marked, []string{cur}) {
		t.Errorf("releases marks %v as current, want %s", marked, cur)
	}
	env := f.cat.Environments["e2e"]
	rep, err := check.Run(ctx, f.cat, check.Target{Env: env, Project: f.project, HostAddr: f.r.Addr, API: f.remote, ReuseProbe: true},
		check.Options{Printer: ui.Plain(&f.out)})
	if err != nil || rep.Failed != 0 || rep.Passed == 0 {
		t.Fatalf("testAll's checks against the host after the restart: %v (%+v)\n%s", err, rep, f.out.String())
	}
}

// TestHelperHoldLock is not a test: the lock test runs this binary as a
// process that takes the lock and waits to be killed.
func TestHelperHoldLock(t *testing.T) {
	file := os.Getenv("MAESTRO_TEST_HOLD_LOCK")
	if file == "" {
		t.Skip("a helper process of the lock test")
	}
	cat, err := catalog.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := release.HoldLock(context.Background(), cat, cat.Environments["e2e"]); err != nil {
		t.Fatal(err)
	}
	fmt.Println("held")
	time.Sleep(5 * time.Minute)
}

func (f *fixture) post(t *testing.T, port int, path, body string) int {
	t.Helper()
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Post(fmt.Sprintf("http://%s:%d%s", f.r.Addr, port, path), "text/plain", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// noLeak greps everything written here and on the host for a secret's
// value: only .env files (0600) may hold it; no output, report, record,
// audit line, compose or stack file, label or service spec.
func (f *fixture) noLeak(ctx context.Context, t *testing.T, value string) {
	t.Helper()
	if strings.Contains(f.out.String(), value) {
		t.Errorf("the output holds the secret")
	}
	for _, root := range []string{f.deploy, f.r.Dir, f.r.Root + "/swarm-deploy"} {
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !d.Type().IsRegular() {
				return nil
			}
			b, err := os.ReadFile(p)
			if err != nil || !strings.Contains(string(b), value) {
				return nil
			}
			fi, _ := d.Info()
			if d.Name() != ".env" || fi.Mode().Perm() != 0o600 {
				t.Errorf("%s (mode %v) holds the secret", p, fi.Mode().Perm())
			}
			return nil
		})
	}
	list, err := f.remote.ContainerList(ctx, client.ContainerListOptions{All: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range list.Items {
		for k, v := range c.Labels {
			if strings.Contains(k+v, value) {
				t.Errorf("container %s label %s holds the secret", c.ID[:12], k)
			}
		}
	}
	svcs, err := f.remote.ServiceList(ctx, client.ServiceListOptions{})
	if err == nil {
		for _, s := range svcs.Items {
			b, _ := json.Marshal(s.Spec)
			if strings.Contains(string(b), value) {
				t.Errorf("swarm service %s's spec holds the secret", s.Spec.Name)
			}
		}
	}
}

// pinnedRef is the pinned reference of the service in the current release,
// as written in its compose file on the host.
func pinnedRef(f *fixture, s *catalog.Service) string {
	b, err := os.ReadFile(filepath.Join(f.r.Dir, "current", "docker-compose.yml"))
	if err != nil {
		f.t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if v, ok := strings.CutPrefix(l, "image: "); ok && strings.Contains(v, "/"+s.Name+":") {
			return strings.Trim(v, `"`)
		}
	}
	f.t.Fatalf("no image of %s in the current compose file", s.Name)
	return ""
}

// ipvs reports whether this kernel has IPVS, which swarm's virtual IPs and
// ingress routing mesh are built on.
func ipvs() bool {
	_, err := os.Stat("/proc/sys/net/ipv4/vs")
	return err == nil
}

// swarm turns the remote host into a single-node swarm, promotes to it,
// and leaves the swarm afterwards. The dnsrr environment needs nothing
// from the kernel beyond what compose needs, so it runs everywhere; the
// vip one needs IPVS.
func (f *fixture) swarm(ctx context.Context, t *testing.T) {
	// The compose stack and the swarm stack share the project name: take
	// the compose one down first.
	down := exec.CommandContext(ctx, "docker-compose", "-p", f.project, "-f",
		filepath.Join(f.r.Dir, "current", "docker-compose.yml"), "down", "--remove-orphans")
	down.Env = append(os.Environ(), "DOCKER_HOST="+f.r.Socket)
	if out, err := down.CombinedOutput(); err != nil {
		t.Fatalf("compose down: %v: %s", err, out)
	}
	if err := proxy.Remove(ctx, f.remote, f.project); err != nil {
		t.Fatalf("remove the compose stack's proxy: %v", err)
	}
	init := exec.CommandContext(ctx, "docker", "-H", f.r.Socket, "swarm", "init", "--advertise-addr", f.r.Addr,
		"--default-addr-pool", "10.203.0.0/16")
	if out, err := init.CombinedOutput(); err != nil {
		t.Fatalf("swarm init: %v: %s", err, out)
	}
	left := false
	leave := func() error {
		out, err := exec.Command("docker", "-H", f.r.Socket, "swarm", "leave", "--force").CombinedOutput()
		if err != nil {
			return fmt.Errorf("swarm leave: %v: %s", err, out)
		}
		left = true
		return nil
	}
	t.Cleanup(func() {
		if !left {
			if err := leave(); err != nil {
				t.Log(err)
			}
		}
	})

	t.Run("dnsrr behind the proxy: 2 healthy replicas, checks green, a one-service update with no failed request", func(t *testing.T) {
		f.swarmPromote(ctx, t, "sw", swarm.ResolutionModeDNSRR)
	})
	t.Run("vip (only on kernels with IPVS)", func(t *testing.T) {
		if !ipvs() {
			t.Skip("this kernel has no IPVS (/proc/sys/net/ipv4/vs), which swarm's virtual IPs need; the dnsrr subtest is what runs here")
		}
		f.swarmPromote(ctx, t, "swvip", swarm.ResolutionModeVIP)
	})

	if err := leave(); err != nil {
		t.Fatal(err)
	}
	info, err := f.remote.Info(ctx, client.InfoOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st := info.Info.Swarm.LocalNodeState; st != swarm.LocalNodeStateInactive {
		t.Fatalf("swarm state %q after leaving, want inactive", st)
	}
}

// swarmPromote promotes to swarm environment env and proves it: checks
// green (template-service's network check reaches state-store by name),
// state-store running 2 tasks whose containers are healthy, no task
// publishing a port (the proxy does), each published service answering on
// the host through the proxy, and the replica count in the output. Then a
// second release changes quality-fabric under load: swarm starts its new
// task first, and no request fails. It removes the stack afterwards.
func (f *fixture) swarmPromote(ctx context.Context, t *testing.T, env string, endpoint swarm.ResolutionMode) {
	res, err := release.Promote(ctx, f.cat, f.opts(env))
	t.Cleanup(func() { f.removeStack(t) })
	if err != nil {
		t.Fatalf("promote to swarm: %v\n%s", err, f.out.String())
	}
	t.Logf("output:\n%s", f.out.String())
	if len(res.Transfer.Sent) != 0 {
		t.Errorf("sent %v to a host that has every image", res.Transfer.Sent)
	}
	if res.Checks == nil || res.Checks.Failed != 0 || res.Checks.Passed == 0 {
		t.Fatalf("checks: %+v", res.Checks)
	}
	reached := false
	for _, r := range res.Checks.Results {
		if r.Service == "template-service" && r.Check == "reaches state-store" && r.Kind == "network" && r.OK {
			reached = true
		}
	}
	if !reached {
		t.Errorf("template-service's network check did not reach state-store: %+v", res.Checks.Results)
	}

	svcs, err := f.remote.ServiceList(ctx, client.ServiceListOptions{
		Filters: client.Filters{}.Add("label", labels.StackNamespace+"="+f.project)})
	if err != nil || len(svcs.Items) != 3 {
		t.Fatalf("stack services: %v %v", svcs.Items, err)
	}
	want := map[string]int{"state-store": 2, "template-service": 1, "quality-fabric": 1}
	for _, s := range svcs.Items {
		name := strings.TrimPrefix(s.Spec.Name, f.project+"_")
		n, ok := want[name]
		if !ok {
			t.Errorf("unexpected service %s", s.Spec.Name)
			continue
		}
		if es := s.Spec.EndpointSpec; es == nil || es.Mode != endpoint || len(es.Ports) != 0 {
			t.Errorf("%s: endpoint spec %+v, want mode %s and no published port", name, es, endpoint)
		}
		if got := f.healthyTasks(ctx, t, s.ID, name); got != n {
			t.Errorf("%s runs %d healthy tasks, want %d", name, got, n)
		}
	}
	ports := []int{f.ports["sw/template-service"], f.ports["sw/quality-fabric"]}
	for i, svc := range []string{"template-service", "quality-fabric"} {
		if code, body := f.get(t, ports[i], "/health"); code != 200 {
			t.Errorf("%s through the proxy on the host: %d %s", svc, code, body)
		}
	}
	counted := false
	for _, l := range strings.Split(f.out.String(), "\n") {
		if strings.Contains(l, "state-store") && strings.Contains(l, "2/2 running and healthy") {
			counted = true
		}
	}
	if !counted {
		t.Errorf("output lacks state-store's replica count (2/2 running and healthy):\n%s", f.out.String())
	}
	if strings.Contains(f.out.String(), "s3cret-release-token") {
		t.Error("a secret reached the output")
	}
	// Status sees the tasks through the manager, each with its node.
	rows, err := release.Status(ctx, f.cat, f.opts(env))
	if err != nil {
		t.Errorf("status of the swarm: %v\n%s", err, f.out.String())
	}
	perService := map[string]int{}
	for _, r := range rows {
		if r.Service != release.ProxyRow && (!r.Healthy || r.Node == "" || r.Release != res.Release) {
			t.Errorf("swarm status row %+v, want a healthy task on a node, of release %s", r, res.Release)
		}
		perService[r.Service]++
	}
	if perService["state-store"] != 2 || perService["template-service"] != 1 || perService[release.ProxyRow] != 1 {
		t.Errorf("swarm status rows per service %v, want state-store's 2 tasks, 1 of the others, the proxy", perService)
	}
	if !strings.Contains(f.out.String(), "NODE") {
		t.Errorf("swarm status has no NODE column:\n%s", f.out.String())
	}
	hostDir := filepath.Join(f.r.Root, map[string]string{"sw": "swarm-deploy", "swvip": "swarm-vip"}[env])
	stack, err := os.ReadFile(filepath.Join(hostDir, "current", "docker-stack.yml"))
	if err != nil {
		t.Fatalf("the live release has no stack file: %v", err)
	}
	if strings.Contains(string(stack), "s3cret-release-token") {
		t.Error("a secret reached the stack file")
	}
	f.noSecretOnHost(t, hostDir, "s3cret-release-token")
	if t.Failed() {
		return
	}

	// A second release changes quality-fabric's spec: swarm starts its new
	// task beside the old one, and the proxy moves to it.
	qf, _ := f.cat.Service("quality-fabric")
	qf.Env["RELEASE_NOTE"] = "second"
	defer delete(qf.Env, "RELEASE_NOTE")
	o := f.opts(env)
	o.Force = true // the configuration is no longer what testAll passed
	var res2 *release.Result
	st := f.load(t, ports, func() {
		if res2, err = release.Promote(ctx, f.cat, o); err != nil {
			t.Fatalf("second promote to swarm: %v\n%s", err, f.out.String())
		}
	})
	testenv.NoFailures(t, "swarm one-service promote", st)
	if res2.Previous != res.Release || res2.Checks == nil || res2.Checks.Failed != 0 {
		t.Fatalf("second promote: previous %q (want %q), checks %+v", res2.Previous, res.Release, res2.Checks)
	}
	if res2.Changes.Count(runtime.Replace) != 1 {
		t.Errorf("changes %s, want quality-fabric alone replaced", res2.Changes.Summary())
	}
	svc, err := f.remote.ServiceInspect(ctx, f.project+"_quality-fabric", client.ServiceInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(svc.Service.Spec.TaskTemplate.ContainerSpec.Env, "RELEASE_NOTE=second") {
		t.Errorf("quality-fabric was not updated: env %v", svc.Service.Spec.TaskTemplate.ContainerSpec.Env)
	}
	if got := f.healthyTasks(ctx, t, svc.Service.ID, "quality-fabric"); got != 1 {
		t.Errorf("quality-fabric runs %d healthy tasks after the update, want 1", got)
	}
	if code, body := f.get(t, f.ports["sw/quality-fabric"], "/env/RELEASE_NOTE"); code != 200 || !strings.Contains(body, "second") {
		t.Errorf("quality-fabric on the host after the update: %d %s, want the new task answering", code, body)
	}

	// Secrets travel as Docker secrets: the task reads API_TOKEN_FILE, and
	// the value is in no stack file, spec, label or output.
	if code := f.post(t, f.ports["sw/template-service"], "/secret/API_TOKEN", "s3cret-release-token"); code != 204 {
		t.Errorf("template-service on swarm does not have the secret: %d", code)
	}
	f.noLeak(ctx, t, "s3cret-release-token")
	// Rotation: a new Docker secret, only its user updated.
	t.Setenv("API_TOKEN", "sw4rm-rotated-token")
	o = f.opts(env)
	o.Force = true
	res3, err := release.Promote(ctx, f.cat, o)
	if err != nil {
		t.Fatalf("rotation on swarm: %v\n%s", err, f.out.String())
	}
	if s := res3.Changes.Summary(); s != "1 replaced (template-service), 2 unchanged" {
		t.Errorf("rotation on swarm changed %s, want template-service alone", s)
	}
	if code := f.post(t, f.ports["sw/template-service"], "/secret/API_TOKEN", "sw4rm-rotated-token"); code != 204 {
		t.Errorf("template-service on swarm does not have the rotated secret: %d", code)
	}
	f.noLeak(ctx, t, "sw4rm-rotated-token")
	f.noSecretOnHost(t, hostDir, "sw4rm-rotated-token")

	// testAll -env checks the swarm as a promote does; down takes the
	// stack, the probe and the proxy off, and a promote starts it again.
	if rep, err := release.TestAll(ctx, f.cat, f.opts(env)); err != nil || rep.Failed != 0 || rep.Passed == 0 {
		t.Errorf("testAll -env on the swarm: %v %+v\n%s", err, rep, f.out.String())
	}
	if err := release.Down(ctx, f.cat, f.opts(env), false); err != nil {
		t.Fatalf("down of the swarm: %v\n%s", err, f.out.String())
	}
	label := client.Filters{}.Add("label", labels.StackNamespace+"="+f.project)
	if svcs, err := f.remote.ServiceList(ctx, client.ServiceListOptions{Filters: label}); err != nil || len(svcs.Items) != 0 {
		t.Errorf("stack services left after down: %v %v", svcs.Items, err)
	}
	if cs, err := f.remote.ContainerList(ctx, client.ContainerListOptions{All: true,
		Filters: client.Filters{}.Add("label", labels.Proxy+"="+f.project)}); err != nil || len(cs.Items) != 0 {
		t.Errorf("the proxy is left after down: %v %v", cs.Items, err)
	}
	o = f.opts(env)
	o.Force = true
	if res, err := release.Promote(ctx, f.cat, o); err != nil || res.Changes.Count(runtime.Start) != 3 {
		t.Fatalf("promote after down on the swarm: %v\n%s", err, f.out.String())
	}
	if code, body := f.get(t, f.ports["sw/quality-fabric"], "/health"); code != 200 {
		t.Errorf("quality-fabric after down and promote on the swarm: %d %s", code, body)
	}
}

// noSecretOnHost fails when a file of a swarm environment's folder on the
// host holds the secret value: there secrets live in Docker's secret store
// only, the .env files stay in the record here. The releases must be there
// (a vacuous walk proves nothing).
func (f *fixture) noSecretOnHost(t *testing.T, hostDir, value string) {
	t.Helper()
	files := 0
	err := filepath.WalkDir(filepath.Join(hostDir, "releases"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !d.Type().IsRegular() {
			return err
		}
		files++
		if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), value) {
			t.Errorf("%s on the swarm's manager holds the secret", p)
		}
		return nil
	})
	if err != nil || files == 0 {
		t.Fatalf("the swarm's releases on the host: %d files, %v", files, err)
	}
}

// healthyTasks counts the service's tasks that swarm wants running and
// runs, whose containers the engine reports healthy; each must have its
// own container.
func (f *fixture) healthyTasks(ctx context.Context, t *testing.T, serviceID, name string) int {
	t.Helper()
	tasks, err := f.remote.TaskList(ctx, client.TaskListOptions{Filters: client.Filters{}.
		Add("service", serviceID).Add("desired-state", "running")})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, tk := range tasks.Items {
		if tk.Status.State != swarm.TaskStateRunning || tk.Status.ContainerStatus == nil {
			t.Errorf("%s task %s: %s %s", name, tk.ID, tk.Status.State, tk.Status.Err)
			continue
		}
		id := tk.Status.ContainerStatus.ContainerID
		c, err := f.remote.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
		if err != nil {
			t.Errorf("%s task %s: container %s: %v", name, tk.ID, id, err)
			continue
		}
		if h := c.Container.State.Health; h == nil || h.Status != "healthy" {
			t.Errorf("%s task %s: container health %+v, want healthy", name, tk.ID, h)
			continue
		}
		seen[id] = true
	}
	return len(seen)
}

// removeStack removes the project's stack and waits until its containers
// and network are gone, so that the next stack can bind the same ports
// and create the same network.
func (f *fixture) removeStack(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The proxy and the checks' probe joined the stack's network: they go
	// first.
	if err := proxy.Remove(ctx, f.remote, f.project); err != nil {
		t.Errorf("remove the proxy: %v", err)
	}
	if err := check.RemoveProbe(ctx, f.remote, f.project); err != nil {
		t.Errorf("remove the probe: %v", err)
	}
	if out, err := exec.CommandContext(ctx, "docker", "-H", f.r.Socket, "stack", "rm", f.project).CombinedOutput(); err != nil {
		t.Errorf("stack rm: %v: %s", err, out)
		return
	}
	label := client.Filters{}.Add("label", labels.StackNamespace+"="+f.project)
	for {
		cs, cerr := f.remote.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: label})
		ns, nerr := f.remote.NetworkList(ctx, client.NetworkListOptions{Filters: label})
		if cerr == nil && nerr == nil && len(cs.Items) == 0 && len(ns.Items) == 0 {
			return
		}
		select {
		case <-ctx.Done():
			t.Errorf("stack %s not gone after docker stack rm: containers %v (%v), networks %v (%v)", f.project, cs.Items, cerr, ns.Items, nerr)
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}
