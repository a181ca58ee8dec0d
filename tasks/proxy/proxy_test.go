package proxy

import (
	"context"
	"embed"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/maestro-platform/deploy/internal/testenv"
	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/maestro-platform/deploy/tasks/labels"
)

//go:embed testdata/backend/main.go
var backendSource embed.FS

// testEnv is what the integration tests share: an engine, a project, and the
// images, each under a repository of the test's own, removed at the end.
type testEnv struct {
	t       *testing.T
	ctx     context.Context
	api     *client.Client
	project string
	backend string // backend image reference
	stage   string // the network new backends start on, off the edge
}

func setup(t *testing.T) *testEnv {
	t.Helper()
	testenv.RequireDocker(t)
	testenv.RequireCommand(t, "go")
	// The first build of the proxy on a machine compiles Caddy (.ci/run
	// builds it before the tests, see internal/helperimages).
	ctx, cancel := testenv.Context(t)
	t.Cleanup(cancel)
	e, err := engine.Connect(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	env := &testEnv{t: t, ctx: ctx, api: e.API, project: testenv.ProjectName(t, "prx")}

	// Images first: their cleanup runs last, once no container uses them.
	// The proxy image is the tool's own (ImageRepo), built once per
	// machine and version and shared by every package's tests, as by
	// every project of a user: it is not this test's to remove.
	backendRepo := "proxytest/" + env.project + "-backend"
	t.Cleanup(func() { env.removeRepo(backendRepo) })
	env.backend, err = engine.EnsureGoImage(ctx, e.API, engine.GoImage{Name: "test backend", Repo: backendRepo,
		Source: backendSource, Dir: "testdata/backend", Module: "example.test/backend", Binary: "backend"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		rctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := Remove(rctx, e.API, env.project); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	env.stage = env.project + "-stage"
	if _, err := e.API.NetworkCreate(ctx, env.stage, client.NetworkCreateOptions{Driver: "bridge",
		Labels: map[string]string{labels.Project: env.project}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		rctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := e.API.NetworkRemove(rctx, env.stage, client.NetworkRemoveOptions{}); err != nil {
			t.Errorf("cleanup: remove network %s: %v", env.stage, err)
		}
	})
	return env
}

func (env *testEnv) removeRepo(repo string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	list, err := env.api.ImageList(ctx, client.ImageListOptions{Filters: make(client.Filters).Add("reference", repo)})
	if err != nil {
		env.t.Errorf("cleanup: list %s: %v", repo, err)
		return
	}
	for _, img := range list.Items {
		for _, tag := range img.RepoTags {
			if strings.HasPrefix(tag, repo+":") {
				if _, err := env.api.ImageRemove(ctx, tag, client.ImageRemoveOptions{Force: true, PruneChildren: true}); err != nil {
					env.t.Errorf("cleanup: remove %s: %v", tag, err)
				}
			}
		}
	}
}

// startBackend starts a backend answering with version on the stage
// network (not the edge) and waits until Docker reports it healthy.
func (env *testEnv) startBackend(service, version string) string {
	t := env.t
	t.Helper()
	name := env.project + "-" + service + "-" + version
	created, err := env.api.ContainerCreate(env.ctx, client.ContainerCreateOptions{
		Name: name,
		Config: &container.Config{Image: env.backend, Env: []string{"VERSION=" + version},
			Labels: map[string]string{labels.Project: env.project},
			Healthcheck: &container.HealthConfig{Test: []string{"CMD", "/backend", "healthcheck"},
				Interval: 500 * time.Millisecond, Timeout: 2 * time.Second, Retries: 3}},
		HostConfig: &container.HostConfig{NetworkMode: container.NetworkMode(env.stage)},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		rctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, err := env.api.ContainerRemove(rctx, created.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
		if err != nil && !engine.IsNotFound(err) {
			t.Errorf("cleanup: remove %s: %v", name, err)
		}
	})
	if _, err := env.api.ContainerStart(env.ctx, created.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(env.ctx, 5*time.Minute)
	defer cancel()
	for {
		in, err := env.api.ContainerInspect(ctx, created.ID, client.ContainerInspectOptions{})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		st := in.Container.State
		if !st.Running {
			t.Fatalf("%s exited %d: %s", name, st.ExitCode, logTail(ctx, env.api, created.ID))
		}
		if st.Health != nil && st.Health.Status == container.Healthy {
			return created.ID
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s not healthy: %v", name, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// retire stops a backend gracefully (SIGTERM, the way a swap does) and
// removes it.
func (env *testEnv) retire(id string) {
	env.t.Helper()
	timeout := 10
	if _, err := env.api.ContainerStop(env.ctx, id, client.ContainerStopOptions{Timeout: &timeout}); err != nil {
		env.t.Fatal(err)
	}
	if _, err := env.api.ContainerRemove(env.ctx, id, client.ContainerRemoveOptions{}); err != nil {
		env.t.Fatal(err)
	}
}

// clock formats event times in logs like testenv.Load's error texts.
const clock = "15:04:05.000"

// version asks url, over a new connection, which backend version answers.
func version(ctx context.Context, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	c := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d", resp.StatusCode)
	}
	return resp.Header.Get("X-Version"), nil
}

// waitVersion polls url until want answers and returns how long that
// took.
func (env *testEnv) waitVersion(url, want string) time.Duration {
	env.t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(env.ctx, 5*time.Minute)
	defer cancel()
	for {
		got, err := version(ctx, url)
		if err == nil && got == want {
			return time.Since(start)
		}
		select {
		case <-ctx.Done():
			env.t.Fatalf("%s never answered with %s (last: %q, %v)", url, want, got, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (env *testEnv) running(id string) bool {
	in, err := env.api.ContainerInspect(env.ctx, id, client.ContainerInspectOptions{})
	return err == nil && in.Container.State.Running
}

// Three swaps of one service under load on two ports, through the real
// Caddy image: no request fails, in either mode, and afterwards every
// request reaches the last version.
func TestSwapsUnderLoad(t *testing.T) {
	env := setup(t)
	ctx, api, project := env.ctx, env.api, env.project

	a1 := env.startBackend("a", "v1")
	b1 := env.startBackend("b", "v1")
	for id, alias := range map[string]string{a1: "svc-a", b1: "svc-b"} {
		if err := Attach(ctx, api, project, id, alias); err == nil || !strings.Contains(err.Error(), "run proxy.Ensure first") {
			t.Fatalf("Attach before Ensure: %v, want the edge network missing", err)
		}
	}
	ports := testenv.FreePorts(t, 2)
	spec := Spec{Project: project, Bind: "127.0.0.1", Routes: []Route{
		{Service: "svc-a", Port: 8080, Listen: ports[0]},
		{Service: "svc-b", Port: 8080, Listen: ports[1]},
	}}
	start := time.Now()
	p, err := Ensure(ctx, api, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Ensure created %s (image %s) in %s", p.Name, p.Image, time.Since(start).Round(time.Millisecond))
	if p.Action != Created || p.Name != ContainerName(project) || p.Network != NetworkName(project) {
		t.Fatalf("Ensure: %+v", p)
	}
	env.checkHardened(p, spec)
	for id, alias := range map[string]string{a1: "svc-a", b1: "svc-b"} {
		if err := Attach(ctx, api, project, id, alias); err != nil {
			t.Fatal(err)
		}
	}
	urlA := fmt.Sprintf("http://127.0.0.1:%d/", ports[0])
	urlB := fmt.Sprintf("http://127.0.0.1:%d/", ports[1])
	env.waitVersion(urlA, "v1")
	env.waitVersion(urlB, "v1")

	// GET, which Caddy retries on another container when the connection
	// it sent one on fails, and POST, which it does not: the old container
	// is drained before it stops (see Drain). Each runs until the swaps
	// are done, however long they take.
	load, err := testenv.NewLoad(testenv.LoadSpec{Targets: []string{urlA, urlB}, Rate: 25, Header: "X-Version"})
	if err != nil {
		t.Fatal(err)
	}
	if err := load.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer load.Stop()
	posts, err := testenv.NewLoad(testenv.LoadSpec{Targets: []string{urlA, urlB}, Rate: 25, Header: "X-Version",
		Method: http.MethodPost, Body: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if err := posts.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer posts.Stop()
	old := a1
	var pickup []time.Duration
	for v := 2; v <= 4; v++ {
		ver := "v" + strconv.Itoa(v)
		id := env.startBackend("a", ver)
		attached := time.Now()
		if err := Attach(ctx, api, project, id, "svc-a"); err != nil {
			t.Fatal(err)
		}
		env.waitVersion(urlA, ver)
		served := time.Now()
		pickup = append(pickup, served.Sub(attached))
		if open, err := Drain(ctx, api, project, []string{old}, time.Minute); err != nil || open != "" {
			t.Fatalf("Drain the old container: %q, %v", open, err)
		}
		env.retire(old)
		// When, to match with the load's error times.
		t.Logf("swap to %s: attached %s, served %s, old one stopped and removed %s", ver,
			attached.Format(clock), served.Format(clock), time.Now().Format(clock))
		old = id
	}
	stats, postStats := load.Stop(), posts.Stop()
	t.Logf("Attach to first request served by the new container: %v", pickup)
	for method, st := range map[string]testenv.LoadStats{"GET": stats, "POST": postStats} {
		t.Logf("%s %s", method, st)
		if st.Reason != testenv.EndedStopped {
			t.Errorf("the %s load ended by its %s (a safety bound) before the swaps were done", method, st.Reason)
		}
		for _, s := range st.Streams {
			if s.Total == 0 || s.Failed != 0 {
				t.Errorf("%s %s %s: %d requests, %d failed: %q", method, s.Target, s.Mode, s.Total, s.Failed, s.Errors)
			}
		}
	}
	if stats.Failed+postStats.Failed > 0 {
		t.Logf("the proxy's log:\n%s", logLines(ctx, api, p.ID, 40))
	}
	seen := map[string]int{}
	for _, mode := range []testenv.LoadMode{testenv.NewConn, testenv.KeepAlive} {
		for v, n := range stats.Stream(urlA, mode).Header {
			seen[v] += n
		}
		if h := stats.Stream(urlB, mode).Header; len(h) != 1 || h["v1"] == 0 {
			t.Errorf("port B (%s) was answered by %v, want v1 alone", mode, h)
		}
	}
	for _, v := range []string{"v1", "v2", "v3", "v4"} {
		if seen[v] == 0 {
			t.Errorf("no request under load reached %s of svc-a (answers: %v)", v, seen)
		}
	}

	// After the swaps, every request reaches the last version.
	after, err := testenv.NewLoad(testenv.LoadSpec{Targets: []string{urlA, urlB}, Rate: 50,
		MaxRequests: 200, Header: "X-Version"})
	if err != nil {
		t.Fatal(err)
	}
	if err := after.Start(ctx); err != nil {
		t.Fatal(err)
	}
	<-after.Done()
	tail := after.Stop()
	t.Log(tail)
	for _, s := range tail.Streams {
		want := "v4"
		if s.Target == urlB {
			want = "v1"
		}
		if s.Failed != 0 || s.Total == 0 || len(s.Header) != 1 || s.Header[want] != s.Total {
			t.Errorf("after the swaps, %s %s: %d requests, %d failed, answered by %v, want all by %s", s.Target, s.Mode,
				s.Total, s.Failed, s.Header, want)
		}
	}

	// The same spec leaves the running proxy alone.
	same, err := Ensure(ctx, api, spec)
	if err != nil {
		t.Fatal(err)
	}
	if same.ID != p.ID || same.Action != Kept {
		t.Errorf("Ensure with the same spec: %s %s, want %s kept", same.Action, engine.ShortID(same.ID), engine.ShortID(p.ID))
	}

	// Another set of ports replaces it.
	third := testenv.FreePorts(t, 1)[0]
	changed := spec
	changed.Routes = []Route{spec.Routes[0], {Service: "svc-b", Port: 8080, Listen: third}}
	repl, err := Ensure(ctx, api, changed)
	if err != nil {
		t.Fatal(err)
	}
	if repl.ID == p.ID || repl.Action != Replaced || repl.Name != p.Name {
		t.Fatalf("Ensure with other ports: %+v, want a new container replacing %s", repl, engine.ShortID(p.ID))
	}
	if _, err := api.ContainerInspect(ctx, p.ID, client.ContainerInspectOptions{}); !engine.IsNotFound(err) {
		t.Errorf("the replaced proxy is still there (%v)", err)
	}
	urlC := fmt.Sprintf("http://127.0.0.1:%d/", third)
	if v, err := version(ctx, urlC); err != nil || v != "v1" {
		t.Errorf("the new port answers %q, %v; want svc-b's v1", v, err)
	}
	if v, err := version(ctx, urlA); err != nil || v != "v4" {
		t.Errorf("the kept port answers %q, %v; want svc-a's v4", v, err)
	}
	if _, err := version(ctx, urlB); err == nil {
		t.Errorf("the port no longer published still answers")
	}

	// A host port that is taken: the error names the project and the
	// port, and the running proxy is back.
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	heldPort := held.Addr().(*net.TCPAddr).Port
	blocked := spec
	blocked.Routes = append(slices.Clone(changed.Routes), Route{Service: "svc-b", Port: 8080, Listen: heldPort})
	_, err = Ensure(ctx, api, blocked)
	for _, want := range []string{"proxy of project " + project, fmt.Sprintf("host port %d on 127.0.0.1 is already taken", heldPort),
		"the previous proxy was started again"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Ensure with a taken port: %v\nwant %q", err, want)
		}
	}
	if !env.running(repl.ID) {
		t.Fatalf("the previous proxy is not running after the failed replacement")
	}
	env.waitVersion(urlA, "v4")
	if again, err := Ensure(ctx, api, changed); err != nil || again.ID != repl.ID || again.Action != Kept {
		t.Errorf("Ensure after the failed replacement: %+v, %v; want %s kept", again, err, engine.ShortID(repl.ID))
	}

	if err := Remove(ctx, api, project); err != nil {
		t.Fatal(err)
	}
	if _, err := api.ContainerInspect(ctx, repl.ID, client.ContainerInspectOptions{}); !engine.IsNotFound(err) {
		t.Errorf("Remove left the proxy (%v)", err)
	}
	if ids, err := edgeNetworks(ctx, api, project); err != nil || len(ids) != 0 {
		t.Errorf("Remove left networks %v (%v)", ids, err)
	}
	if !env.running(old) {
		t.Errorf("Remove stopped a service container")
	}
}

// checkHardened holds the proxy container to what Ensure promises.
func (env *testEnv) checkHardened(p *Proxy, spec Spec) {
	t := env.t
	t.Helper()
	in, err := env.api.ContainerInspect(env.ctx, p.ID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := in.Container
	h := c.HostConfig
	// The engine may report capabilities with their CAP_ prefix.
	capAdd := slices.Clone(h.CapAdd)
	for i := range capAdd {
		capAdd[i] = strings.TrimPrefix(capAdd[i], "CAP_")
	}
	if !h.ReadonlyRootfs || !slices.Equal(h.CapDrop, []string{"ALL"}) || !slices.Equal(capAdd, []string{"NET_BIND_SERVICE"}) ||
		!slices.Contains(h.SecurityOpt, "no-new-privileges:true") || h.Memory == 0 || h.PidsLimit == nil || *h.PidsLimit == 0 ||
		h.RestartPolicy.Name != container.RestartPolicyUnlessStopped || len(h.Binds) != 0 {
		t.Errorf("proxy host config: read-only %v, cap drop %v add %v, security %v, memory %d, pids %v, restart %q, binds %v",
			h.ReadonlyRootfs, h.CapDrop, h.CapAdd, h.SecurityOpt, h.Memory, *h.PidsLimit, h.RestartPolicy.Name, h.Binds)
	}
	for _, dir := range []string{"/data", "/config", "/tmp"} {
		if _, ok := h.Tmpfs[dir]; !ok {
			t.Errorf("no tmpfs on %s: %v", dir, h.Tmpfs)
		}
	}
	for _, m := range c.Mounts {
		if m.Type != "volume" || m.Destination != configDir {
			t.Errorf("unexpected mount %+v: only the configuration volume", m)
		}
	}
	for _, r := range spec.Routes {
		var found bool
		for port, bs := range h.PortBindings {
			if port.Num() == uint16(r.Listen) {
				found = len(bs) == 1 && bs[0].HostIP.String() == spec.Bind && bs[0].HostPort == strconv.Itoa(r.Listen)
			}
		}
		if !found {
			t.Errorf("port %d is not published on %s:%d: %v", r.Listen, spec.Bind, r.Listen, h.PortBindings)
		}
	}
	if l := c.Config.Labels; l[labels.Proxy] != spec.Project || l[labels.Project] != spec.Project || l[labels.ProxyHash] != p.Hash {
		t.Errorf("proxy labels %v", l)
	}
	n, err := env.api.NetworkInspect(env.ctx, p.NetworkID, client.NetworkInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n.Network.Name != NetworkName(spec.Project) || n.Network.Driver != "bridge" ||
		n.Network.Labels[labels.Proxy] != spec.Project || n.Network.Labels[labels.Project] != spec.Project {
		t.Errorf("edge network %s (%s) labels %v", n.Network.Name, n.Network.Driver, n.Network.Labels)
	}
}

// Caddy itself accepts the configurations Config renders, and says what
// is wrong with a bad one.
func TestValidate(t *testing.T) {
	env := setup(t)
	golden, err := os.ReadFile(filepath.Join("testdata", "demo.json"))
	if err != nil {
		t.Fatal(err)
	}
	ref, err := EnsureImage(env.ctx, env.api)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate(env.ctx, env.api, env.project, ref, golden); err != nil {
		t.Errorf("the golden configuration: %v", err)
	}
	bad := []byte(`{"admin":{"disabled":true},"apps":{"http":{"servers":{"s":{"listen":[":8000"],` +
		`"routes":[{"handle":[{"handler":"no_such_handler"}]}]}}}}}`)
	err = validate(env.ctx, env.api, env.project, ref, bad)
	if err == nil || !strings.Contains(err.Error(), "caddy rejects the configuration") || !strings.Contains(err.Error(), "no_such_handler") {
		t.Errorf("a bad configuration: %v, want caddy's reason", err)
	}
	if _, err := env.api.ContainerInspect(env.ctx, ContainerName(env.project)+"-validate", client.ContainerInspectOptions{}); !engine.IsNotFound(err) {
		t.Errorf("validate left its container (%v)", err)
	}
}

// Attach is idempotent for the same alias, refuses another, and refuses a
// container that does not run.
func TestAttach(t *testing.T) {
	env := setup(t)
	ctx, api, project := env.ctx, env.api, env.project
	id := env.startBackend("a", "v1")
	if _, err := ensureNetwork(ctx, api, project); err != nil {
		t.Fatal(err)
	}
	if err := Attach(ctx, api, project, id, "Not_A_Label"); err == nil || !strings.Contains(err.Error(), "not a DNS label") {
		t.Errorf("bad alias: %v", err)
	}
	for range 2 {
		if err := Attach(ctx, api, project, id, "svc-a"); err != nil {
			t.Fatal(err)
		}
	}
	in, err := api.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ep := in.Container.NetworkSettings.Networks[NetworkName(project)]
	if ep == nil || !slices.Contains(ep.Aliases, "svc-a") {
		t.Fatalf("after Attach: %+v", ep)
	}
	if err := Attach(ctx, api, project, id, "svc-b"); err == nil || !strings.Contains(err.Error(), "it serves one service only") {
		t.Errorf("Attach under another alias: %v", err)
	}
	stopped := 1
	if _, err := api.ContainerStop(ctx, id, client.ContainerStopOptions{Timeout: &stopped}); err != nil {
		t.Fatal(err)
	}
	if err := Attach(ctx, api, project, id, "svc-a"); err == nil || !strings.Contains(err.Error(), "not running") {
		t.Errorf("Attach of a stopped container: %v", err)
	}
}

// Drain takes a container out of rotation while its request in flight
// finishes: no new request (POST, which Caddy does not retry once sent)
// reaches it, Drain says what is still open until the request is done and
// is idle after, and a later container given the drained address is in
// rotation again.
func TestDrain(t *testing.T) {
	env := setup(t)
	ctx, api, project := env.ctx, env.api, env.project
	port := testenv.FreePorts(t, 1)[0]
	if _, err := Ensure(ctx, api, Spec{Project: project, Bind: "127.0.0.1",
		Routes: []Route{{Service: "svc-a", Port: 8080, Listen: port}}}); err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	a1 := env.startBackend("a", "v1")
	if err := Attach(ctx, api, project, a1, "svc-a"); err != nil {
		t.Fatal(err)
	}
	env.waitVersion(url, "v1")
	a1URL := env.directURL(a1)

	// A request in flight on v1, held until the test releases it.
	heldDone := make(chan string, 1)
	go func() {
		c := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
		resp, err := c.Post(url+"hold", "text/plain", strings.NewReader("payload"))
		if err != nil {
			heldDone <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		heldDone <- fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}()
	env.waitBody(a1URL+"held", "1")

	a2 := env.startBackend("a", "v2")
	if err := Attach(ctx, api, project, a2, "svc-a"); err != nil {
		t.Fatal(err)
	}
	env.waitVersion(url, "v2")

	// Out of rotation, without waiting: the held request is still open.
	open, err := Drain(ctx, api, project, []string{a1}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(open, "1 connection(s) still open") {
		t.Fatalf("Drain while a request is in flight: %q, want 1 connection still open", open)
	}
	served := env.body(a1URL + "served")
	load, err := testenv.NewLoad(testenv.LoadSpec{Targets: []string{url}, Rate: 50, MaxRequests: 300,
		Method: http.MethodPost, Body: "x", Header: "X-Version"})
	if err != nil {
		t.Fatal(err)
	}
	if err := load.Start(ctx); err != nil {
		t.Fatal(err)
	}
	<-load.Done()
	st := load.Stop()
	t.Log(st)
	if st.Failed != 0 || st.Total == 0 || st.Stream(url, testenv.NewConn).Header["v2"]+st.Stream(url, testenv.KeepAlive).Header["v2"] != st.Total {
		t.Errorf("POSTs while v1 drains: %d of %d failed, want none, all answered by v2:\n%s", st.Failed, st.Total, st)
	}
	if got := env.body(a1URL + "served"); got != served {
		t.Errorf("the drained container served %s requests after Drain, had served %s before: it must get none", got, served)
	}
	select {
	case got := <-heldDone:
		t.Fatalf("the held request ended before its release: %s", got)
	default:
	}

	// Released, the request ends on v1 and the drain is idle.
	env.body(a1URL + "release")
	if got := <-heldDone; got != "200 v1" {
		t.Errorf("the request in flight during the drain got %q, want 200 v1", got)
	}
	open, err = Drain(ctx, api, project, []string{a1}, 5*time.Minute)
	if err != nil || open != "" {
		t.Fatalf("Drain after the request ended: %q, %v; want idle", open, err)
	}
	before, err := env.edgeAddrs(a1)
	if err != nil || len(before) != 1 {
		t.Fatalf("a1's edge address: %v, %v", before, err)
	}
	env.retire(a1)

	// The next container on the edge network is likely given a1's
	// address (the engine hands out the lowest free one): Attach puts it
	// back in rotation.
	a3 := env.startBackend("a", "v3")
	if err := Attach(ctx, api, project, a3, "svc-a"); err != nil {
		t.Fatal(err)
	}
	after, err := env.edgeAddrs(a3)
	if err != nil || len(after) != 1 {
		t.Fatalf("a3's edge address: %v, %v", after, err)
	}
	if after[0] != before[0] {
		t.Logf("a3 got %s, not the drained %s: the put-back is not exercised this run", after[0], before[0])
	}
	env.waitVersion(url, "v3")
}

// directURL is the address of a backend on its stage network, which this
// host reaches without the proxy.
func (env *testEnv) directURL(id string) string {
	env.t.Helper()
	in, err := env.api.ContainerInspect(env.ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		env.t.Fatal(err)
	}
	ep := in.Container.NetworkSettings.Networks[env.stage]
	if ep == nil || !ep.IPAddress.IsValid() {
		env.t.Fatalf("%s has no address on %s", engine.ShortID(id), env.stage)
	}
	return "http://" + net.JoinHostPort(ep.IPAddress.String(), "8080") + "/"
}

// body GETs url directly and returns its trimmed body.
func (env *testEnv) body(url string) string {
	env.t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		env.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b))
}

// waitBody polls url until its body is want.
func (env *testEnv) waitBody(url, want string) {
	env.t.Helper()
	ctx, cancel := context.WithTimeout(env.ctx, 2*time.Minute)
	defer cancel()
	for {
		if got := env.body(url); got == want {
			return
		}
		select {
		case <-ctx.Done():
			env.t.Fatalf("%s never said %s", url, want)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// edgeAddrs is the container's address on the project's edge network.
func (env *testEnv) edgeAddrs(id string) ([]string, error) {
	netID, err := findNetwork(env.ctx, env.api, env.project)
	if err != nil {
		return nil, err
	}
	return edgeAddrs(env.ctx, env.api, netID, []string{id})
}
