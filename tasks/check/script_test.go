package check

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/maestro-platform/deploy/internal/testenv"
	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/check/probe"
	"github.com/maestro-platform/deploy/tasks/render"
)

// The rendered test-all.sh runs testAll's checks: the same list in the
// same order, and for each http and network check the same probe spec, so
// that both judge alike. render cannot import check (the data flows the
// other way), so this test holds the two together.
func TestRenderedTestScriptRunsTestAllsChecks(t *testing.T) {
	repoCat, err := catalog.Load(filepath.Join(testenv.RepoRoot(), "services.toml"))
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
