package check

import (
	"archive/tar"
	"bytes"
	"context"
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

	"github.com/maestro-platform/deploy/internal/testenv"
	"github.com/maestro-platform/deploy/tasks/ui"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
)

// stackService is one container of the test stack.
type stackService struct {
	name, src string // src: folder under examples/maestro-platform
	port      int
	env       []string
}

// buildSample compiles a sample service and builds it into a FROM scratch
// image tagged ref.
func buildSample(t *testing.T, api *client.Client, src, ref string) {
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
	if err := buildStreamError(res.Body); err != nil {
		t.Fatalf("build %s: %v", ref, err)
	}
}

// TestStack brings up a gateway and two backends the way compose would
// (labels, one network, aliases, published ports, healthchecks) and runs
// the checks against it: green first, then with a backend stopped.
func TestStack(t *testing.T) {
	testenv.RequireDocker(t)
	testenv.RequireCommand(t, "go")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	api, err := client.New(client.FromEnv)
	if err != nil {
		t.Fatal(err)
	}
	defer api.Close()
	bg := context.Background()

	project := testenv.ProjectName(t, "checkt")
	// The probe image of this test is ours to remove: give it our own
	// repository instead of the shared cache.
	probeRepo = project + "/probe"
	t.Cleanup(func() { probeRepo = ProbeRepo })

	svcs := []stackService{
		{name: "template-service", src: "services/template-service", port: 8005},
		{name: "k8s-execution-service", src: "services/k8s-execution-service", port: 8004},
		{name: "maestro-gateway", src: "maestro-engine", port: 8080, env: []string{
			"UPSTREAMS=template-service=http://template-service:8005,k8s-execution-service=http://k8s-execution-service:8004",
			// What the rendered .env would hand the container: the secret.
			"API_KEY=" + testSecret}},
	}
	ports := testenv.FreePorts(t, len(svcs))
	var images, containers []string
	t.Cleanup(func() {
		for _, id := range containers {
			_, _ = api.ContainerRemove(bg, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
		}
		_, _ = api.NetworkRemove(bg, project+"_platform", client.NetworkRemoveOptions{})
		for _, ref := range images {
			_, _ = api.ImageRemove(bg, ref, client.ImageRemoveOptions{Force: true, PruneChildren: true})
		}
	})

	for _, s := range svcs {
		ref := project + "/" + s.name + ":test"
		images = append(images, ref)
		buildSample(t, api, s.src, ref)
	}
	probeRef, err := EnsureProbe(ctx, api)
	if err != nil {
		t.Fatalf("EnsureProbe: %v", err)
	}
	images = append(images, probeRef)
	if !strings.HasPrefix(probeRef, project+"/probe:") {
		t.Fatalf("probe ref %s", probeRef)
	}
	if again, err := EnsureProbe(ctx, api); err != nil || again != probeRef {
		t.Fatalf("EnsureProbe again: %s, %v (want the cached %s)", again, err, probeRef)
	}

	netName := project + "_platform"
	if _, err := api.NetworkCreate(ctx, netName, client.NetworkCreateOptions{Driver: "bridge",
		Labels: map[string]string{labelProject: project, "com.docker.compose.network": "platform"}}); err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for i, s := range svcs {
		cport := network.MustParsePort(strconv.Itoa(s.port) + "/tcp")
		hostIP, _ := netipLoopback()
		res, err := api.ContainerCreate(ctx, client.ContainerCreateOptions{
			Name: fmt.Sprintf("%s_%s_1", project, s.name),
			Config: &container.Config{Image: project + "/" + s.name + ":test",
				Env:          append([]string{"SERVICE_NAME=" + s.name, "PORT=" + strconv.Itoa(s.port)}, s.env...),
				ExposedPorts: network.PortSet{cport: {}},
				Labels:       map[string]string{labelProject: project, labelService: s.name, labelOneOff: "False"},
				Healthcheck: &container.HealthConfig{Test: []string{"CMD", "/app", "-healthcheck"},
					Interval: 500 * time.Millisecond, Timeout: 2 * time.Second, Retries: 3}},
			HostConfig: &container.HostConfig{NetworkMode: container.NetworkMode(netName),
				PortBindings: network.PortMap{cport: {{HostIP: hostIP, HostPort: strconv.Itoa(ports[i])}}}},
			NetworkingConfig: &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{
				netName: {Aliases: []string{s.name}}}},
		})
		if err != nil {
			t.Fatalf("create %s: %v", s.name, err)
		}
		containers = append(containers, res.ID)
		ids[s.name] = res.ID
		if _, err := api.ContainerStart(ctx, res.ID, client.ContainerStartOptions{}); err != nil {
			t.Fatalf("start %s: %v", s.name, err)
		}
	}
	waitHealthy(t, ctx, api, ids)

	gatewayChecks := []string{
		`name = "health"` + "\n" + `json_field = "status"` + "\n" + `json_equals = "ok"`,
		`name = "gateway -> template-service"` + "\n" + `kind = "network"` + "\n" + `path = "/call/template-service"` + "\n" + `contains = "\"ok\":true"`,
		`name = "gateway -> k8s-execution-service"` + "\n" + `kind = "network"` + "\n" + `path = "/call/k8s-execution-service"` + "\n" + `json_field = "ok"` + "\n" + `json_equals = "true"`,
	}
	catalogOf := func(extra ...string) []svcSpec {
		return []svcSpec{
			{name: "template-service", port: 8005, dev: ports[0]},
			{name: "k8s-execution-service", port: 8004, dev: ports[1]},
			{name: "maestro-gateway", port: 8080, dev: ports[2], extra: `secrets = { API_KEY = "` + testSecret + `" }`,
				checks: append(append([]string{}, gatewayChecks...), extra...)},
		}
	}

	t.Run("green", func(t *testing.T) {
		cat := testCatalog(t, project, catalogOf())
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
		cat := testCatalog(t, project, catalogOf())
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

	t.Run("backend stopped", func(t *testing.T) {
		timeout := 2
		if _, err := api.ContainerStop(ctx, ids["k8s-execution-service"], client.ContainerStopOptions{Timeout: &timeout}); err != nil {
			t.Fatal(err)
		}
		// A check that would print the secret: the service echoes API_KEY,
		// and the failure detail quotes the body.
		cat := testCatalog(t, project, catalogOf(`name = "echo"`+"\n"+`path = "/env/API_KEY"`+"\n"+`contains = "never there"`+"\n"+`retries = 0`))
		env, _ := cat.Env("dev")
		var out bytes.Buffer
		rep, err := Run(ctx, cat, Target{Env: env, Project: project, Network: netName, API: api}, Options{Printer: ui.Plain(&out)})
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
			if strings.Contains(err.Error(), name+" (") != wantFailed[name] {
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
		assertNoProbeLeft(t, api, project)
	})
}

func waitHealthy(t *testing.T, ctx context.Context, api *client.Client, ids map[string]string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
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
		Filters: make(client.Filters).Add("label", labelProbe+"="+project)})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Items) != 0 {
		t.Errorf("%d probe containers left behind", len(res.Items))
	}
}

func netipLoopback() (netip.Addr, error) { return netip.ParseAddr("127.0.0.1") }
