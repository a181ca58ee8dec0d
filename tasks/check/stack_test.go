package check

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/maestro-platform/deploy/tasks/labels"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/maestro-platform/deploy/internal/testenv"
	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/check/probe"
	"github.com/maestro-platform/deploy/tasks/compose"
	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/maestro-platform/deploy/tasks/ui"
)

// stackService is one container of the test stack.
type stackService struct {
	name, src string // src: folder under examples/maestro-platform
	port      int
	env       []string
}

// buildSample compiles a sample service and builds it into a FROM scratch
// image tagged ref.
func buildSample(t testing.TB, api *client.Client, src, ref string) {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "..", "examples", "maestro-platform", src)
	out := filepath.Join(t.TempDir(), "app")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", src, err, b)
	}
	bin, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var ctxTar bytes.Buffer
	tw := tar.NewWriter(&ctxTar)
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{{"Dockerfile", 0o644, []byte("FROM scratch\nCOPY app /app\nENTRYPOINT [\"/app\"]\n")}, {"app", 0o755, bin}} {
		_ = tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data))})
		_, _ = tw.Write(f.data)
	}
	_ = tw.Close()
	res, err := api.ImageBuild(context.Background(), &ctxTar, client.ImageBuildOptions{Tags: []string{ref}, Remove: true, ForceRemove: true})
	if err != nil {
		t.Fatalf("build %s: %v", ref, err)
	}
	defer res.Body.Close()
	if err := engine.StreamError(res.Body); err != nil {
		t.Fatalf("build %s: %v", ref, err)
	}
}

// testStack is a gateway and two backends brought up the way compose would
// (labels, one network, aliases, published ports, healthchecks).
type testStack struct {
	api              *client.Client
	project, netName string
	probeRef         string
	ports            []int
	ids              map[string]string // service -> container ID
}

// catalog returns the stack's catalog; extra are more checks of the
// gateway.
func (s *testStack) catalog(tb testing.TB, extra ...string) *catalog.Catalog {
	gatewayChecks := []string{
		`name = "health"` + "\n" + `json_field = "status"` + "\n" + `json_equals = "ok"`,
		`name = "gateway -> template-service"` + "\n" + `kind = "network"` + "\n" + `path = "/call/template-service"` + "\n" + `contains = "\"ok\":true"`,
		`name = "gateway -> k8s-execution-service"` + "\n" + `kind = "network"` + "\n" + `path = "/call/k8s-execution-service"` + "\n" + `json_field = "ok"` + "\n" + `json_equals = "true"`,
	}
	return testCatalog(tb, s.project, []svcSpec{
		{name: "template-service", port: 8005, dev: s.ports[0]},
		{name: "k8s-execution-service", port: 8004, dev: s.ports[1]},
		{name: "maestro-gateway", port: 8080, dev: s.ports[2], extra: `secrets = { API_KEY = "` + testSecret + `" }`,
			checks: append(gatewayChecks, extra...)},
	})
}

// startTestStack builds the images (and a probe image of the test's own)
// and starts the stack; cleanup removes all of it, and every probe
// container of the project.
func startTestStack(tb testing.TB, ctx context.Context) *testStack {
	tb.Helper()
	testenv.RequireDocker(tb)
	testenv.RequireCommand(tb, "go")
	api, err := client.New(client.FromEnv)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { api.Close() })
	bg := context.Background()

	project := testenv.ProjectName(tb, "checkt")
	// The probe image of this test is ours to remove: give it our own
	// repository instead of the shared cache.
	probeRepo = project + "/probe"
	tb.Cleanup(func() { probeRepo = ProbeRepo })

	svcs := []stackService{
		{name: "template-service", src: "services/template-service", port: 8005},
		{name: "k8s-execution-service", src: "services/k8s-execution-service", port: 8004},
		{name: "maestro-gateway", src: "maestro-engine", port: 8080, env: []string{
			"UPSTREAMS=template-service=http://template-service:8005,k8s-execution-service=http://k8s-execution-service:8004",
			// What the rendered .env would hand the container: the secret.
			"API_KEY=" + testSecret}},
	}
	st := &testStack{api: api, project: project, netName: project + "_platform",
		ports: testenv.FreePorts(tb, len(svcs)), ids: map[string]string{}}
	var images []string
	tb.Cleanup(func() {
		for _, id := range st.ids {
			_, _ = api.ContainerRemove(bg, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
		}
		_ = RemoveProbe(bg, api, project)
		_, _ = api.NetworkRemove(bg, st.netName, client.NetworkRemoveOptions{})
		for _, ref := range images {
			_, _ = api.ImageRemove(bg, ref, client.ImageRemoveOptions{Force: true, PruneChildren: true})
		}
		// Tags a test added to the probe image.
		res, _ := api.ImageList(bg, client.ImageListOptions{Filters: make(client.Filters).Add("reference", project+"/*")})
		for _, im := range res.Items {
			for _, tag := range im.RepoTags {
				_, _ = api.ImageRemove(bg, tag, client.ImageRemoveOptions{Force: true, PruneChildren: true})
			}
		}
	})

	for _, s := range svcs {
		ref := project + "/" + s.name + ":test"
		images = append(images, ref)
		buildSample(tb, api, s.src, ref)
	}
	probeRef, err := EnsureProbe(ctx, api)
	if err != nil {
		tb.Fatalf("EnsureProbe: %v", err)
	}
	images = append(images, probeRef)
	st.probeRef = probeRef
	if !strings.HasPrefix(probeRef, project+"/probe:") {
		tb.Fatalf("probe ref %s", probeRef)
	}
	if again, err := EnsureProbe(ctx, api); err != nil || again != probeRef {
		tb.Fatalf("EnsureProbe again: %s, %v (want the cached %s)", again, err, probeRef)
	}

	if _, err := api.NetworkCreate(ctx, st.netName, client.NetworkCreateOptions{Driver: "bridge",
		Labels: map[string]string{labels.ComposeProject: project, labels.ComposeNetwork: "platform"}}); err != nil {
		tb.Fatal(err)
	}
	for i, s := range svcs {
		cport := network.MustParsePort(strconv.Itoa(s.port) + "/tcp")
		hostIP, _ := netipLoopback()
		res, err := api.ContainerCreate(ctx, client.ContainerCreateOptions{
			Name: fmt.Sprintf("%s_%s_1", project, s.name),
			Config: &container.Config{Image: project + "/" + s.name + ":test",
				Env:          append([]string{"SERVICE_NAME=" + s.name, "PORT=" + strconv.Itoa(s.port)}, s.env...),
				ExposedPorts: network.PortSet{cport: {}},
				Labels:       map[string]string{labels.ComposeProject: project, labels.ComposeService: s.name, labels.ComposeOneOff: "False"},
				Healthcheck: &container.HealthConfig{Test: []string{"CMD", "/app", "-healthcheck"},
					Interval: 500 * time.Millisecond, Timeout: 2 * time.Second, Retries: 3}},
			HostConfig: &container.HostConfig{NetworkMode: container.NetworkMode(st.netName),
				PortBindings: network.PortMap{cport: {{HostIP: hostIP, HostPort: strconv.Itoa(st.ports[i])}}}},
			NetworkingConfig: &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{
				st.netName: {Aliases: []string{s.name}}}},
		})
		if err != nil {
			tb.Fatalf("create %s: %v", s.name, err)
		}
		st.ids[s.name] = res.ID
		if _, err := api.ContainerStart(ctx, res.ID, client.ContainerStartOptions{}); err != nil {
			tb.Fatalf("start %s: %v", s.name, err)
		}
	}
	waitHealthy(tb, ctx, api, st.ids)
	return st
}

// TestStack runs the checks against a test stack: green first, with the
// one-shot probe and with a reused probe server, then with a backend
// stopped, then takes the stack down with compose.
func TestStack(t *testing.T) {
	ctx, cancel := testenv.Context(t)
	defer cancel()
	st := startTestStack(t, ctx)
	api, project, netName, ids := st.api, st.project, st.netName, st.ids
	catalogOf := func(extra ...string) *catalog.Catalog { return st.catalog(t, extra...) }

	t.Run("green", func(t *testing.T) {
		cat := catalogOf()
		env, _ := cat.Env("dev")
		var out bytes.Buffer
		start := time.Now()
		rep, err := Run(ctx, cat, Target{Env: env, Project: project, API: api}, Options{Printer: ui.Plain(&out)})
		t.Logf("green run took %s\n%s", time.Since(start), out.String())
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		// 3 container checks, 2 implicit health checks (the gateway
		// declares its own), the gateway's 3 declared checks.
		if rep.Passed != 8 || rep.Failed != 0 || len(rep.Results) != 8 {
			t.Fatalf("passed %d failed %d of %d, want 8/0/8", rep.Passed, rep.Failed, len(rep.Results))
		}
		got := byName(rep)
		for _, name := range []string{"maestro-gateway/gateway -> template-service", "maestro-gateway/gateway -> k8s-execution-service"} {
			if r := got[name]; r.Kind != "network" || r.Status != 200 || !r.OK {
				t.Errorf("%s: %+v", name, r)
			}
		}
		for _, name := range []string{"template-service/container", "k8s-execution-service/container", "maestro-gateway/container"} {
			if r := got[name]; r.Kind != KindContainer || r.Detail != "healthy" {
				t.Errorf("%s: %+v", name, r)
			}
		}
		if r := got["template-service/health"]; r.Kind != "http" || r.Status != 200 {
			t.Errorf("implicit health: %+v", r)
		}
		assertNoProbeLeft(t, api, project)
	})

	t.Run("network not found", func(t *testing.T) {
		if _, err := ProjectNetwork(ctx, api, project+"-none", "platform"); err == nil || !strings.Contains(err.Error(), project+"-none") {
			t.Errorf("ProjectNetwork of a missing project: %v", err)
		}
		cat := catalogOf()
		env, _ := cat.Env("dev")
		rep, err := Run(ctx, cat, Target{Env: env, Project: project, Network: project + "_nowhere", API: api}, Options{DeclaredOnly: true})
		if err == nil || rep.Failed != 2 || rep.Passed != 1 {
			t.Fatalf("got %v, %+v", err, rep)
		}
		for _, r := range rep.Results {
			if r.Kind == "network" && !strings.Contains(r.Detail, project+"_nowhere") {
				t.Errorf("%s: detail %q does not name the network", r.Check, r.Detail)
			}
		}
		assertNoProbeLeft(t, api, project)
	})

	t.Run("reuse", func(t *testing.T) {
		cat := catalogOf()
		env, _ := cat.Env("dev")
		target := Target{Env: env, Project: project, API: api, ReuseProbe: true}
		run := func(t *testing.T) string {
			t.Helper()
			rep, err := Run(ctx, cat, target, Options{})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			got := byName(rep)
			for _, name := range []string{"maestro-gateway/gateway -> template-service", "maestro-gateway/gateway -> k8s-execution-service"} {
				if r := got[name]; r.Kind != "network" || r.Status != 200 || !r.OK || r.Attempts != 1 {
					t.Errorf("%s: %+v", name, r)
				}
			}
			return servedProbe(t, api, project)
		}
		first := run(t)
		if again := run(t); again != first {
			t.Errorf("second run used probe server %s, want the first one %s again", engine.ShortID(again), engine.ShortID(first))
		}
		// Compose sees nothing of it: no compose label makes it an orphan
		// that `up --remove-orphans` would remove.
		in, err := api.ContainerInspect(ctx, first, client.ContainerInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got := in.Container.Config.Labels
		// No compose label: compose would take the server for an orphan
		// of the project, and `up --remove-orphans` would remove it.
		if got[labels.ComposeProject] != "" || got[labels.ComposeService] != "" || got[labels.Probe] != project {
			t.Errorf("probe server labels %v: want no compose label and the probe label naming the project", got)
		}
		for port, bs := range in.Container.HostConfig.PortBindings {
			for _, b := range bs {
				if !b.HostIP.IsLoopback() {
					t.Errorf("probe server publishes %s on %s, want loopback only", port, b.HostIP)
				}
			}
		}
		if groups, err := observe(ctx, Target{Project: project, API: api}); err != nil || len(groups) != 3 {
			t.Errorf("project containers with a probe server running: %v, %v (want the 3 services)", groups, err)
		}

		t.Run("dead", func(t *testing.T) {
			if _, err := api.ContainerKill(ctx, first, client.ContainerKillOptions{}); err != nil {
				t.Fatal(err)
			}
			next := run(t)
			if next == first {
				t.Fatalf("a killed probe server %s was used again", engine.ShortID(first))
			}
			if _, err := api.ContainerInspect(ctx, first, client.ContainerInspectOptions{}); err == nil {
				t.Errorf("the killed probe server %s was not removed", engine.ShortID(first))
			}
			first = next
		})
		t.Run("missing", func(t *testing.T) {
			if _, err := api.ContainerRemove(ctx, first, client.ContainerRemoveOptions{Force: true}); err != nil {
				t.Fatal(err)
			}
			if next := run(t); next == first {
				t.Fatalf("removed probe server %s reported again", engine.ShortID(first))
			}
		})
		t.Run("image changed", func(t *testing.T) {
			old := servedProbe(t, api, project)
			// Another probe version: same binary, other reference, which is
			// all the server's label records.
			other := project + "/probe:other"
			if _, err := api.ImageTag(ctx, client.ImageTagOptions{Source: st.probeRef, Target: other}); err != nil {
				t.Fatal(err)
			}
			srv, reused, err := ensureServer(ctx, api, other, netName, project, "")
			if err != nil || reused || srv.id == old {
				t.Fatalf("ensureServer with a new image: %+v reused=%v err=%v (old %s)", srv, reused, err, engine.ShortID(old))
			}
			if now := servedProbe(t, api, project); now != srv.id {
				t.Errorf("probe server %s, want the new %s only", engine.ShortID(now), engine.ShortID(srv.id))
			}
			// And back: Run replaces it with one of the current image.
			if back := run(t); back == srv.id {
				t.Errorf("Run kept the server of %s, want one of %s", other, st.probeRef)
			}
		})
		t.Run("RemoveProbe", func(t *testing.T) {
			if !LocalEngine(api) {
				t.Fatalf("LocalEngine(%s) = false", api.DaemonHost())
			}
			before := servedProbe(t, api, project)
			if err := RemoveProbe(ctx, api, project); err != nil {
				t.Fatalf("RemoveProbe: %v", err)
			}
			assertNoProbeLeft(t, api, project)
			if _, err := api.ContainerInspect(ctx, before, client.ContainerInspectOptions{}); err == nil {
				t.Errorf("RemoveProbe left %s", engine.ShortID(before))
			}
		})
		t.Run("server fails, one-shot runs", func(t *testing.T) {
			// A server that cannot listen exits at once.
			serverCmd = func() []string { return []string{"-serve", ":99999"} }
			defer func() {
				serverCmd = func() []string {
					return []string{"-serve", ":" + strconv.Itoa(probeServePort), "-idle", ProbeIdle.String()}
				}
			}()
			// How the wait for the server ended: it must stop because the
			// server exited, not run into its timeout.
			var waits []error
			testHookServerWait = func(err error) { waits = append(waits, err) }
			defer func() { testHookServerWait = nil }()
			var out bytes.Buffer
			rep, err := Run(ctx, cat, target, Options{Printer: ui.Plain(&out)})
			if err != nil || rep.Passed != len(rep.Results) {
				t.Fatalf("Run: %v\n%s", err, out.String())
			}
			for _, w := range waits {
				if !errors.Is(w, errServerExited) {
					t.Errorf("the wait for the dead probe server ended with %v, want it noticed as exited", w)
				}
			}
			if !strings.Contains(out.String(), "using a one-shot probe") || !strings.Contains(out.String(), "exited 1") ||
				!strings.Contains(out.String(), "invalid port") {
				t.Errorf("no warning that says why the server failed:\n%s", out.String())
			}
			assertNoProbeLeft(t, api, project)
		})
	})

	t.Run("backend stopped", func(t *testing.T) {
		timeout := 2
		if _, err := api.ContainerStop(ctx, ids["k8s-execution-service"], client.ContainerStopOptions{Timeout: &timeout}); err != nil {
			t.Fatal(err)
		}
		for _, reuse := range []bool{false, true} {
			mode := "one-shot"
			if reuse {
				mode = "reused"
			}
			t.Run(mode, func(t *testing.T) {
				// A check that would print the secret: the service echoes API_KEY,
				// and the failure detail quotes the body.
				cat := catalogOf(`name = "echo"` + "\n" + `path = "/env/API_KEY"` + "\n" + `contains = "never there"` + "\n" + `retries = 0`)
				env, _ := cat.Env("dev")
				var out bytes.Buffer
				rep, err := Run(ctx, cat, Target{Env: env, Project: project, Network: netName, API: api, ReuseProbe: reuse}, Options{Printer: ui.Plain(&out)})
				t.Logf("\n%s", out.String())
				if err == nil {
					t.Fatal("Run: want an error")
				}
				wantFailed := map[string]bool{
					"k8s-execution-service/container":                  true,
					"k8s-execution-service/health":                     true,
					"maestro-gateway/gateway -> k8s-execution-service": true,
					"maestro-gateway/echo":                             true,
				}
				for _, r := range rep.Results {
					name := r.Service + "/" + r.Check
					if r.OK == wantFailed[name] {
						t.Errorf("%s: ok=%v, want %v (%s)", name, r.OK, !wantFailed[name], r.Detail)
					}
					if strings.Contains(err.Error(), name) != wantFailed[name] {
						t.Errorf("error names %s: %v, want %v", name, !wantFailed[name], wantFailed[name])
					}
				}
				if rep.Failed != len(wantFailed) || rep.Passed != 5 {
					t.Errorf("failed %d passed %d, want %d and 5", rep.Failed, rep.Passed, len(wantFailed))
				}
				got := byName(rep)
				if d := got["k8s-execution-service/container"].Detail; !strings.Contains(d, "exited") {
					t.Errorf("stopped container detail %q", d)
				}
				if d := got["k8s-execution-service/health"].Detail; d != "connection refused" {
					t.Errorf("stopped service health detail %q", d)
				}
				if d := got["maestro-gateway/gateway -> k8s-execution-service"].Detail; !strings.HasPrefix(d, "status 502 (want 200)") {
					t.Errorf("gateway -> stopped backend detail %q", d)
				}
				if d := got["maestro-gateway/echo"].Detail; !strings.Contains(d, "***") {
					t.Errorf("echo detail %q: the secret should show redacted", d)
				}
				var junit, js bytes.Buffer
				if err := rep.WriteJUnit(&junit); err != nil {
					t.Fatal(err)
				}
				if err := rep.WriteJSON(&js); err != nil {
					t.Fatal(err)
				}
				for what, s := range map[string]string{"printed output": out.String(), "JUnit": junit.String(),
					"JSON": js.String(), "error": err.Error()} {
					if strings.Contains(s, testSecret) {
						t.Errorf("the secret appears in the %s", what)
					}
				}
				checkJUnit(t, junit.Bytes(), rep)
				checkJSON(t, js.Bytes(), rep)
				if !reuse {
					assertNoProbeLeft(t, api, project)
					return
				}
				// Straight from the probe server to the stopped backend.
				srv, reused, err := ensureServer(ctx, api, st.probeRef, netName, project, "")
				if err != nil || !reused {
					t.Fatalf("ensureServer: reused=%v %v", reused, err)
				}
				outs, err := postSpecs(ctx, srv, []probe.Spec{{ID: "down", URL: "http://k8s-execution-service:8004/health", TimeoutMS: 2000},
					{ID: "up", URL: "http://template-service:8005/health"}})
				if err != nil || len(outs) != 2 {
					t.Fatalf("postSpecs: %v %+v", err, outs)
				}
				if o := outs[0]; o.OK || o.ID != "down" || (!strings.HasPrefix(o.Detail, "no such host") && o.Detail != "connection refused") {
					t.Errorf("stopped backend from inside the network: %+v", o)
				}
				if o := outs[1]; !o.OK || o.ID != "up" || o.Status != 200 {
					t.Errorf("running backend from inside the network: %+v", o)
				}
			})
		}
	})

	// Last: compose's `up --remove-orphans` (mage's, deploy-all.sh's)
	// removes the containers of services no longer in the file and leaves
	// the probe server alone; down removes the server first (as stack's
	// Down does: compose cannot take the network while it is attached),
	// then compose takes the project down.
	t.Run("compose leaves it, down removes it", func(t *testing.T) {
		cli, err := compose.Detect(ctx)
		if err != nil {
			if testenv.InCI() {
				t.Fatalf("compose CLI: %v", err)
			}
			t.Skipf("no compose CLI: %v", err)
		}
		server := servedProbe(t, api, project) // left running by "backend stopped"
		dir := t.TempDir()
		file := filepath.Join(dir, "docker-compose.yml")
		yml := "services:\n  other:\n    image: " + project + "/template-service:test\n    networks: [platform]\nnetworks:\n  platform: {}\n"
		if err := os.WriteFile(file, []byte(yml), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := compose.Exec(ctx, dir, nil, cli.UpStackArgs(project, []string{file}, []string{"other"})); err != nil {
			t.Fatalf("compose up --remove-orphans: %v\n%s", err, out)
		}
		if again := servedProbe(t, api, project); again != server {
			t.Errorf("probe server %s replaced by %s", engine.ShortID(server), engine.ShortID(again))
		}
		left, err := api.ContainerList(ctx, client.ContainerListOptions{All: true,
			Filters: make(client.Filters).Add("label", labels.ComposeProject+"="+project)})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range left.Items {
			if svc := c.Labels[labels.ComposeService]; svc != "other" {
				t.Errorf("up --remove-orphans left %s, which the file no longer has", svc)
			}
		}
		if err := RemoveProbe(ctx, api, project); err != nil {
			t.Fatal(err)
		}
		if out, err := compose.Exec(ctx, dir, nil, cli.Args(project, []string{file}, "down", "--remove-orphans")); err != nil {
			t.Fatalf("compose down: %v\n%s", err, out)
		}
		assertNoProbeLeft(t, api, project)
		if _, err := api.NetworkInspect(ctx, netName, client.NetworkInspectOptions{}); err == nil {
			t.Errorf("compose down left the network %s", netName)
		}
	})
}

func waitHealthy(t testing.TB, ctx context.Context, api *client.Client, ids map[string]string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute) // a safety bound: it ends a wait that would last for ever
	for name, id := range ids {
		for {
			res, err := api.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
			if err != nil {
				t.Fatal(err)
			}
			st := res.Container.State
			if st.Health != nil && st.Health.Status == container.Healthy {
				break
			}
			if !st.Running || time.Now().After(deadline) {
				t.Fatalf("%s did not become healthy: %+v", name, st)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

func assertNoProbeLeft(t *testing.T, api *client.Client, project string) {
	t.Helper()
	res, err := api.ContainerList(context.Background(), client.ContainerListOptions{All: true,
		Filters: make(client.Filters).Add("label", labels.Probe+"="+project)})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Items) != 0 {
		t.Errorf("%d probe containers left behind", len(res.Items))
	}
}

// servedProbe returns the ID of the project's only probe server, failing
// when there is none or more than one.
func servedProbe(t *testing.T, api *client.Client, project string) string {
	t.Helper()
	res, err := api.ContainerList(context.Background(), client.ContainerListOptions{All: true,
		Filters: make(client.Filters).Add("label", labels.Probe+"="+project, labels.ProbeMode+"=serve")})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Items) != 1 {
		t.Fatalf("%d probe servers of %s, want 1", len(res.Items), project)
	}
	if c := res.Items[0]; c.State != "running" {
		t.Fatalf("probe server %s is %s", engine.ShortID(c.ID), c.State)
	}
	return res.Items[0].ID
}

func netipLoopback() (netip.Addr, error) { return netip.ParseAddr("127.0.0.1") }
