package check

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/maestro-platform/deploy/internal/testenv"
	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/check/probe"
	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/maestro-platform/deploy/tasks/health"
	"github.com/maestro-platform/deploy/tasks/render"
)

// The rendered test-all.sh runs testAll's checks: the same list in the
// same order, and for each http and network check the same probe spec, so
// that both judge alike. render cannot import check (the data flows the
// other way), so this test holds the two together.
func TestRenderedTestScriptRunsTestAllsChecks(t *testing.T) {
	repoCat, err := catalog.Load(testenv.SampleCatalog())
	if err != nil {
		t.Fatal(err)
	}
	odd := testCatalog(t, "odd", []svcSpec{
		// Unpublished infrastructure with an http check: a failure.
		{name: "db", infra: true, port: 5432, checks: []string{`name = "health"`}},
		{name: "hidden", port: 8081, dev: 18081},
		{name: "web", port: 8080, dev: 18080, extra: `health = "/healthz"`, checks: []string{
			"name = \"tricky\"\npath = \"/a'b?c=<d>&e\"\nstatus = 204\ncontains = \"it's \\\"ok\\\"\"\ntimeout = \"1500ms\"\nretries = 0",
			"name = \"deep\"\njson_field = \"a.0.b\"\njson_equals = \"x\"\nretries = 4",
			"name = \"inside\"\nkind = \"network\"\npath = \"/in\"\ntimeout = \"7s\"",
		}},
	})
	// An application service the environment does not publish gets its
	// health checked from the network (no catalog of the dev column can
	// say so: the loader wants dev_port there).
	hidden, _ := odd.Service("hidden")
	hidden.DevPort = 0
	for name, cat := range map[string]*catalog.Catalog{"services.toml": repoCat, "odd": odd} {
		t.Run(name, func(t *testing.T) {
			env := cat.Environments["dev"]
			tree, err := render.Render(cat, env, render.Options{Build: true})
			if err != nil {
				t.Fatal(err)
			}
			for _, name := range []string{render.TestScript, render.DeployScript} {
				f, _ := tree.File(name)
				if out, err := exec.Command("bash", "-n", "-c", string(f.Data)).CombinedOutput(); err != nil {
					t.Errorf("%s is not valid bash: %v\n%s", name, err, out)
				}
			}
			f, ok := tree.File(render.TestScript)
			if !ok {
				t.Fatal("no test-all.sh rendered")
			}
			vars := scriptVars(t, string(f.Data))
			jobs := plan(cat, Target{Env: env, HostAddr: "127.0.0.1"}, Options{})
			if len(vars["c_kind"]) != len(jobs) {
				t.Fatalf("test-all.sh has %d checks, testAll %d", len(vars["c_kind"]), len(jobs))
			}
			specs := map[string]probe.Spec{}
			for _, v := range []string{"http_specs", "network_specs"} {
				if len(vars[v]) != 1 || vars[v][0] == "" {
					continue
				}
				text := strings.ReplaceAll(vars[v][0], "<host>", "127.0.0.1")
				var list []probe.Spec
				if err := json.Unmarshal([]byte(text), &list); err != nil {
					t.Fatalf("%s: %v\n%s", v, err, text)
				}
				for _, s := range list {
					specs[s.ID] = s
				}
			}
			for i, j := range jobs {
				id := strconv.Itoa(i)
				where := j.service.Name + "/" + j.name
				if got := []string{vars["c_service"][i], vars["c_name"][i], vars["c_kind"][i]}; got[0] != j.service.Name || got[1] != j.name || got[2] != j.kind {
					t.Errorf("check %d: test-all.sh has %v, testAll %s (%s)", i, got, where, j.kind)
				}
				if vars["c_fail"][i] != j.skip {
					t.Errorf("%s: test-all.sh fails it with %q, testAll with %q", where, vars["c_fail"][i], j.skip)
				}
				s, ok := specs[id]
				if j.kind == KindContainer || j.skip != "" {
					if ok {
						t.Errorf("%s: test-all.sh gives the probe a spec for it: %+v", where, s)
					}
					continue
				}
				want := j.spec
				want.ID = id
				if !ok || s != want {
					t.Errorf("%s: test-all.sh's spec\n%+v\ntestAll's\n%+v", where, s, want)
				}
			}
		})
	}
}

// scriptVars reads the assignments `name=(words)` and `name=word` of a
// rendered script, unquoting the words as bash would: bare, or in single
// quotes, with '\” for a quote.
func scriptVars(t *testing.T, script string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, line := range strings.Split(script, "\n") {
		name, value, ok := strings.Cut(line, "=")
		if _, seen := out[name]; seen || !ok || name == "" || strings.ContainsAny(name, " \t$#") {
			continue
		}
		if strings.HasPrefix(value, "(") && strings.HasSuffix(value, ")") {
			out[name] = shWords(t, value[1:len(value)-1])
		} else if w := shWords(t, value); len(w) == 1 {
			out[name] = w
		}
	}
	return out
}

func shWords(t *testing.T, s string) []string {
	var words []string
	var cur strings.Builder
	in, started := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case in && c == '\'':
			in = false
		case in:
			cur.WriteByte(c)
		case c == '\'':
			in, started = true, true
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			started = true
		case c == ' ':
			if started {
				words = append(words, cur.String())
				cur.Reset()
				started = false
			}
		default:
			cur.WriteByte(c)
			started = true
		}
	}
	if in {
		t.Fatalf("unterminated quote in %q", s)
	}
	if started {
		words = append(words, cur.String())
	}
	return words
}

// On a swarm environment test-all.sh judges each service by its stack
// service's replicas, not by compose containers, which a swarm has none of;
// its settings are checked before anything runs. docker and curl are fakes
// here: what the script makes of their answers is under test, not swarm.
func TestRenderedTestScriptOnSwarm(t *testing.T) {
	cat, err := catalog.Load(testenv.SampleCatalog())
	if err != nil {
		t.Fatal(err)
	}
	env := cat.Environments["demo"]
	env.Engine = catalog.EngineSwarm
	cat.SecretsEnv = env.Name // the catalog's values stand in for resolved secrets
	tree, err := render.Render(cat, env, render.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f, _ := tree.File(render.TestScript)
	script := filepath.Join(dir, render.TestScript)
	bin := filepath.Join(dir, "bin")
	services := filepath.Join(dir, "services")
	for name, text := range map[string]string{
		script: string(f.Data),
		filepath.Join(bin, "docker"): `#!/bin/sh
case "$1" in
version) echo 20.10.24 ;;
images) ;;
service) cat "$FAKE_SERVICES" ;;
*) echo "fake docker: $*" >&2; exit 1 ;;
esac
`,
		// Nothing answers on the published ports.
		filepath.Join(bin, "curl"): "#!/bin/sh\necho 'curl: (7) Failed to connect' >&2\nexit 7\n",
		services: "shop_state-store 2/2\nshop_template-service 1/1\nshop_automation-service 0/1\n" +
			"shop_k8s-execution-service 1/1 (max 1 per node)\nshop_maestro-gateway 1/1\nother_quality-fabric 1/1\n",
	} {
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, []byte(text), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	run := func(env ...string) (string, int) {
		cmd := exec.Command("bash", script)
		cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "FAKE_SERVICES="+services, "COMPOSE_PROJECT_NAME=shop")
		cmd.Env = append(cmd.Env, env...)
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), code
	}
	out, code := run("DEPLOY_PROBE_IMAGE=")
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	for svc, want := range map[string]string{
		"state-store":           "PASS  state-store              container                          2/2 tasks running",
		"k8s-execution-service": "PASS  k8s-execution-service    container                          1/1 tasks running",
		"automation-service":    "FAIL  automation-service       container                          0/1 tasks running",
		"quality-fabric":        "FAIL  quality-fabric           container                          no service shop_quality-fabric in stack shop (is the stack up?)",
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("%s: no line %q in:\n%s", svc, want, out)
		}
	}
	if !strings.Contains(out, "no answer: could not connect to 127.0.0.1:8005") {
		t.Errorf("curl's failure is not in words:\n%s", out)
	}

	for _, bad := range []struct{ env, want string }{
		{"DEPLOY_HOST=127.0.0.1;id", `DEPLOY_HOST=127.0.0.1\;id: not a host name or address`},
		{"DEPLOY_HOST=::1", "an IPv6 address goes in brackets"},
		{"DEPLOY_PROBE_IMAGE=--privileged", "DEPLOY_PROBE_IMAGE=--privileged: not an image reference"},
		{"COMPOSE_PROJECT_NAME=Shop", "COMPOSE_PROJECT_NAME=Shop: not a compose project name"},
	} {
		out, code := run(bad.env)
		if code != 2 || !strings.Contains(out, bad.want) || strings.Contains(out, "PASS") {
			t.Errorf("%s: exit %d, want 2 and %q:\n%s", bad.env, code, bad.want, out)
		}
	}
}

// test-all.sh judges a compose service's containers in bash, testAll in Go
// (health.ContainerUnit and health.Judge). The same cases run through both
// and must get the same verdict: PASS exactly when Judge calls the service
// healthy, and a fatal state in the same words. docker and sleep are fakes:
// what the script makes of docker's answers is under test.
func TestRenderedTestScriptJudgesAsJudge(t *testing.T) {
	type ctr struct {
		state, health  string
		exit, restarts int
	}
	cases := []struct {
		name    string
		oneShot bool
		ctrs    []ctr
	}{
		{name: "no container"},
		{name: "running, no healthcheck", ctrs: []ctr{{state: "running"}}},
		{name: "healthy", ctrs: []ctr{{state: "running", health: "healthy"}}},
		{name: "health starting", ctrs: []ctr{{state: "running", health: "starting"}}},
		{name: "unhealthy", ctrs: []ctr{{state: "running", health: "unhealthy"}}},
		{name: "created", ctrs: []ctr{{state: "created"}}},
		{name: "paused", ctrs: []ctr{{state: "paused"}}},
		{name: "exited 2", ctrs: []ctr{{state: "exited", exit: 2}}},
		{name: "exited 0 (a service)", ctrs: []ctr{{state: "exited"}}},
		{name: "dead", ctrs: []ctr{{state: "dead", exit: 137}}},
		{name: "restarting", ctrs: []ctr{{state: "restarting", exit: 1, restarts: 4}}},
		{name: "two healthy", ctrs: []ctr{{state: "running", health: "healthy"}, {state: "running", health: "healthy"}}},
		{name: "healthy and starting", ctrs: []ctr{{state: "running", health: "healthy"}, {state: "running", health: "starting"}}},
		{name: "healthy and exited", ctrs: []ctr{{state: "running", health: "healthy"}, {state: "exited", exit: 1}}},
		{name: "one-shot completed", oneShot: true, ctrs: []ctr{{state: "exited"}}},
		{name: "one-shot running", oneShot: true, ctrs: []ctr{{state: "running"}}},
		{name: "one-shot failed", oneShot: true, ctrs: []ctr{{state: "exited", exit: 3}}},
		{name: "one-shot not started", oneShot: true, ctrs: []ctr{{state: "created"}}},
		{name: "one-shot no container", oneShot: true},
	}
	// A service per case; a one-shot case's service is a job its
	// dependant waits for.
	var specs []svcSpec
	svcName := func(i int) string { return fmt.Sprintf("c%d", i) }
	for i, c := range cases {
		s := svcSpec{name: svcName(i), port: 8000 + i, dev: 18000 + i}
		if c.oneShot {
			s.extra = `compose = { restart = "no" }`
		}
		specs = append(specs, s)
		if c.oneShot {
			specs = append(specs, svcSpec{name: svcName(i) + "-user", port: 9000 + i, dev: 19000 + i,
				extra: fmt.Sprintf("depends_on = { %s = %q }", svcName(i), catalog.ConditionCompleted)})
		}
	}
	cat := testCatalog(t, "judge", specs)
	env := cat.Environments["dev"]
	tree, err := render.Render(cat, env, render.Options{Build: true})
	if err != nil {
		t.Fatal(err)
	}
	f, _ := tree.File(render.TestScript)
	dir := t.TempDir()
	fake, bin := filepath.Join(dir, "fake"), filepath.Join(dir, "bin")
	files := map[string]string{
		filepath.Join(dir, render.TestScript): string(f.Data),
		filepath.Join(bin, "docker"): `#!/bin/sh
case "$1" in
version) echo 20.10.24 ;;
images) ;;
ps)
  for a; do case $a in label=*.service=*) svc=${a##*=} ;; esac; done
  cat "$FAKE/$svc.ids" 2>/dev/null || true ;;
inspect) for a; do id=$a; done; cat "$FAKE/$id" ;;
*) echo "fake docker: $*" >&2; exit 1 ;;
esac
`,
		filepath.Join(bin, "sleep"): "#!/bin/sh\n",
		filepath.Join(bin, "curl"):  "#!/bin/sh\necho 'curl: (7) Failed to connect' >&2\nexit 7\n",
	}
	want := map[string]health.Verdict{}
	for i, c := range cases {
		var ids []string
		o := health.Observation{OneShot: cat.OneShot(svcName(i))}
		if o.OneShot != c.oneShot {
			t.Fatalf("%s: the catalog does not make %s one-shot", c.name, svcName(i))
		}
		for j, x := range c.ctrs {
			id := fmt.Sprintf("%064d", i*10+j+1)
			ids = append(ids, id)
			h := x.health
			if h == "" {
				h = "none"
			}
			files[filepath.Join(fake, id)] = fmt.Sprintf("%s %s %d %d\n", x.state, h, x.exit, x.restarts)
			o.Units = append(o.Units, health.ContainerUnit(engine.Container{ID: id, State: x.state, Health: x.health, ExitCode: x.exit, RestartCount: x.restarts}))
		}
		if len(ids) > 0 {
			files[filepath.Join(fake, svcName(i)+".ids")] = strings.Join(ids, "\n") + "\n"
		}
		want[svcName(i)] = health.Judge(o)
	}
	for name, text := range files {
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, []byte(text), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("bash", filepath.Join(dir, render.TestScript))
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "FAKE="+fake, "DEPLOY_PROBE_IMAGE=")
	out, _ := cmd.CombinedOutput()
	got := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 2 && (f[0] == "PASS" || f[0] == "FAIL") && f[2] == "container" {
			got[f[1]] = strings.TrimSpace(line)
		}
	}
	for i, c := range cases {
		v, line := want[svcName(i)], got[svcName(i)]
		switch {
		case line == "":
			t.Errorf("%s: test-all.sh printed no container line for %s:\n%s", c.name, svcName(i), out)
		case v.Healthy != strings.HasPrefix(line, "PASS"):
			t.Errorf("%s: test-all.sh says %q, Judge %+v", c.name, line, v)
		case v.Fatal != "" && !strings.Contains(line, strings.SplitN(v.Fatal, " (healthcheck", 2)[0]):
			t.Errorf("%s: test-all.sh says %q, Judge's fatal state is %q", c.name, line, v.Fatal)
		}
	}
}
