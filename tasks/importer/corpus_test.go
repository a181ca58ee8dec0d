package importer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v4"

	"github.com/maestro-platform/deploy/internal/testenv"
	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/render"
)

// The corpus: testdata/corpus/*/ each hold a compose file (with what it
// needs beside it) and expect.txt, which says what import must make of it:
//
//	project: WHAT                          (a project written from what public compose files
//	                                        do, not a case of one rule; counted apart)
//	import: ok | lossy | broken
//	loss: KEY "message substring"          (lossy: each must be listed, and nothing else)
//	error: LINE KEY "message substring"    (broken: each must be reported; KEY "-" = none)
//	secret: NAME                           (NAME must become a secret name; no value written)
//	note: KEY "message substring"          (a note import must give)
//	want: TEXT                             (the proposed catalog must hold TEXT)
//	env: NAME=value                        (the shell environment of compose and of the import,
//	                                        which must take nothing from it)
//	shell: NAME=value                      (the operator's shell during the import only, which
//	                                        it must take nothing from; compose runs without it)
//	roundtrip: v1 only: REASON | refused WHAT: REASON
//
// An ok case imports without -lossy, loads, renders, and its round trip
// holds under compose v1 and v2: `config` of each imported service in the
// rendered file equals that of the original, but for what the tool adds
// or maps on purpose (see normalize). A lossy case is refused without
// -lossy, listing its losses; with -lossy it imports and renders, and its
// round trip is an expected, named refusal. A broken case is refused with
// file:line errors and writes nothing.

type expectation struct {
	project   string
	kind      string // ok, lossy, broken
	losses    []keyMsg
	errors    []lineKeyMsg
	secrets   []string
	notes     []keyMsg
	wants     []string
	env       []string
	shell     []string
	v1Only    string // why the round trip runs under compose v1 only
	refused   string // why the round trip is not expected to hold
	refusedAs string
}

type keyMsg struct{ key, msg string }

type lineKeyMsg struct {
	line     int
	key, msg string
}

var (
	lossLine  = regexp.MustCompile(`^(?:loss|note): (\S+) "(.*)"$`)
	errorLine = regexp.MustCompile(`^error: (\d+) ("[^"]*"|\S+) "(.*)"$`)
)

func readExpect(t *testing.T, dir string) expectation {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(dir, "expect.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var x expectation
	for _, l := range strings.Split(strings.TrimSpace(string(src)), "\n") {
		k, v, _ := strings.Cut(l, ": ")
		switch k {
		case "import":
			x.kind = v
		case "project":
			x.project = v
		case "loss":
			m := lossLine.FindStringSubmatch(l)
			if m == nil {
				t.Fatalf("%s: bad line %q", dir, l)
			}
			x.losses = append(x.losses, keyMsg{m[1], m[2]})
		case "error":
			m := errorLine.FindStringSubmatch(l)
			if m == nil {
				t.Fatalf("%s: bad line %q", dir, l)
			}
			n, _ := strconv.Atoi(m[1])
			if m[2] == "-" {
				m[2] = ""
			}
			m[2] = strings.Trim(m[2], `"`)
			x.errors = append(x.errors, lineKeyMsg{n, m[2], m[3]})
		case "secret":
			x.secrets = append(x.secrets, v)
		case "note":
			m := lossLine.FindStringSubmatch(l)
			if m == nil {
				t.Fatalf("%s: bad line %q", dir, l)
			}
			x.notes = append(x.notes, keyMsg{m[1], m[2]})
		case "want":
			x.wants = append(x.wants, v)
		case "env":
			x.env = append(x.env, v)
		case "shell":
			x.shell = append(x.shell, v)
		case "roundtrip":
			switch {
			case strings.HasPrefix(v, "v1 only: "):
				x.v1Only = strings.TrimPrefix(v, "v1 only: ")
			case strings.HasPrefix(v, "refused "):
				x.refusedAs, x.refused, _ = strings.Cut(strings.TrimPrefix(v, "refused "), ": ")
			default:
				t.Fatalf("%s: bad line %q", dir, l)
			}
		default:
			t.Fatalf("%s: bad line %q", dir, l)
		}
	}
	if x.kind != "ok" && x.kind != "lossy" && x.kind != "broken" {
		t.Fatalf("%s: import: %q", dir, x.kind)
	}
	return x
}

func corpusDirs(t *testing.T) []string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join("testdata", "corpus", "*"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "expect.txt")); err == nil {
			abs, _ := filepath.Abs(d)
			out = append(out, abs)
		}
	}
	if len(out) < 25 {
		t.Fatalf("%d corpus cases, want at least 25", len(out))
	}
	return out
}

// clis are the compose command lines, v1 and v2, that the round trips
// run under.
type cli struct {
	name string
	argv []string
}

func composeCLIs(t *testing.T) []cli {
	t.Helper()
	v1 := testenv.RequireCommand(t, "docker-compose")
	return []cli{{"v1", []string{v1}}, {"v2", strings.Fields(testenv.ComposeV2(t))}}
}

// cleanEnv is what compose runs with: PATH and HOME of the process, and
// extra; nothing else of the process environment changes what it reads.
func cleanEnv(extra []string) []string {
	var out []string
	for _, k := range []string{"PATH", "HOME"} {
		if v, ok := os.LookupEnv(k); ok {
			out = append(out, k+"="+v)
		}
	}
	return append(out, extra...)
}

// config runs `config` in dir and returns the services and volumes it
// reports: JSON from v2, YAML (no JSON there) from v1.
func config(t *testing.T, c cli, dir, file string, env []string) map[string]any {
	t.Helper()
	doc, err := configOf(c, dir, file, env)
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func configOf(c cli, dir, file string, env []string) (map[string]any, error) {
	args := slices.Clone(c.argv[1:])
	if file != "" {
		args = append(args, "-f", file)
	}
	args = append(args, "-p", "roundtrip", "config")
	if c.name == "v2" {
		args = append(args, "--format", "json")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.argv[0], args...)
	cmd.Dir, cmd.Env = dir, cleanEnv(env)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("compose %s config in %s: %v\n%s", c.name, dir, err, stderr.String())
	}
	var doc map[string]any
	if c.name == "v2" {
		err = json.Unmarshal(out, &doc)
	} else {
		err = yaml.Unmarshal(out, &doc)
	}
	if err != nil {
		return nil, fmt.Errorf("compose %s config output: %v\n%s", c.name, err, out)
	}
	return doc, nil
}

// TestCorpus runs the cases two at a time (but those that set the
// shell's variables, which a parallel test may not), each running its
// compose commands at once, while the originals' `config` runs ahead, a
// few at a time: docker-compose 1.29 takes seconds to start on a busy
// machine, and the package's tests share one time limit.
//
// It ends with the counts of the cases that held, the projects apart:
// how many import without -lossy and round-trip under compose v1 and v2,
// how many are refused.
func TestCorpus(t *testing.T) {
	dirs := corpusDirs(t)
	clis := composeCLIs(t)
	ahead := originalsAhead(t, dirs, clis)
	var mu sync.Mutex
	held := map[bool]map[string]int{true: {}, false: {}}
	t.Cleanup(func() {
		for _, projects := range []bool{true, false} {
			what := "rule cases"
			if projects {
				what = "projects"
			}
			c := held[projects]
			t.Logf("corpus %s held: %d import without -lossy and round-trip under compose v1 and v2 (%d under v1 only), %d refused with losses, %d refused with errors",
				what, c["ok"], c["ok under v1 only"], c["lossy"], c["broken"])
		}
	})
	for _, dir := range dirs {
		x := readExpect(t, dir)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			if len(x.env) == 0 && len(x.shell) == 0 {
				t.Parallel()
			}
			corpusCase(t, dir, x, clis, ahead)
			if !t.Failed() {
				kind := x.kind
				if kind == "ok" && x.v1Only != "" {
					kind = "ok under v1 only"
				}
				mu.Lock()
				held[x.project != ""][kind]++
				mu.Unlock()
			}
		})
	}
}

// originalsAhead starts `config` of every original a round trip compares
// with, at most four at a time; each result is awaited where it is used.
func originalsAhead(t *testing.T, dirs []string, clis []cli) map[string]*configRun {
	out := map[string]*configRun{}
	slots := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for _, dir := range dirs {
		x := readExpect(t, dir)
		if x.kind == "broken" || x.refused != "" {
			continue
		}
		for _, c := range clis {
			if x.v1Only != "" && c.name == "v2" {
				continue
			}
			r := &configRun{c: c, dir: dir, file: "docker-compose.yml", env: x.env, done: make(chan struct{})}
			out[c.name+" "+dir] = r
			wg.Go(func() {
				defer close(r.done)
				slots <- struct{}{}
				defer func() { <-slots }()
				r.doc, r.err = configOf(r.c, r.dir, r.file, r.env)
			})
		}
	}
	t.Cleanup(wg.Wait)
	return out
}

func corpusCase(t *testing.T, dir string, x expectation, clis []cli, ahead map[string]*configRun) {
	catDir := t.TempDir()
	catFile := filepath.Join(catDir, "services.toml")
	empty := "[project]\nname = \"roundtrip\"\ndeploy_dir = \"deployment\"\n"
	if err := os.WriteFile(catFile, []byte(empty), 0o644); err != nil {
		t.Fatal(err)
	}
	// The shell's variables are set for the import too: it must take
	// nothing from them.
	for _, kv := range slices.Concat(x.env, x.shell) {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	opts := Options{Catalog: catFile, Paths: []string{dir}, Out: &bytes.Buffer{}}
	res, err := Import(context.Background(), opts)
	if b, _ := os.ReadFile(catFile); string(b) != empty {
		if x.kind != "ok" {
			t.Fatalf("a refused import changed the catalog:\n%s", b)
		}
	}
	switch x.kind {
	case "broken":
		var ce catalog.Errors
		if !errors.As(err, &ce) {
			t.Fatalf("import: %v, want file:line errors", err)
		}
		for _, w := range x.errors {
			if !slices.ContainsFunc(ce, func(e *catalog.Error) bool {
				return e.Line == w.line && e.Key == w.key && strings.Contains(e.Msg, w.msg) && e.Hint != "" &&
					strings.HasSuffix(e.File, "docker-compose.yml")
			}) {
				t.Errorf("no error at line %d key %q with %q in:\n%v", w.line, w.key, w.msg, ce)
			}
		}
		t.Logf("%v", ce)
		return
	case "lossy":
		var le *LossError
		if !errors.As(err, &le) {
			t.Fatalf("import without -lossy: %v, want the losses listed", err)
		}
		for _, w := range x.losses {
			if !slices.ContainsFunc(le.Losses, func(l Finding) bool { return l.Key == w.key && strings.Contains(l.Msg, w.msg) && l.Line > 0 }) {
				t.Errorf("no loss %s %q in:\n%v", w.key, w.msg, le)
			}
		}
		if len(le.Losses) != len(x.losses) {
			t.Errorf("%d losses, want %d:\n%v", len(le.Losses), len(x.losses), le)
		}
		opts.Lossy = true
		res, err = Import(context.Background(), opts)
	}
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	if !res.Written || res.Diff == "" {
		t.Fatalf("nothing written: %+v", res)
	}
	for _, w := range x.notes {
		if !slices.ContainsFunc(res.Notes, func(n Finding) bool { return n.Key == w.key && strings.Contains(n.Msg, w.msg) && n.Line > 0 }) {
			t.Errorf("no note %s %q in:\n%v", w.key, w.msg, res.Notes)
		}
	}
	text, _ := os.ReadFile(catFile)
	for _, kv := range slices.Concat(x.env, x.shell) {
		if _, v, _ := strings.Cut(kv, "="); v != "" && strings.Contains(string(text), v) {
			t.Errorf("the shell's value %q is in the catalog", v)
		}
	}
	for _, w := range x.wants {
		if !strings.Contains(string(text), w) {
			t.Errorf("the catalog lacks %q:\n%s", w, text)
		}
	}
	cat, err := catalog.Load(catFile)
	if err != nil {
		t.Fatalf("the imported catalog does not load: %v\n%s", err, text)
	}
	orig := originalValues(t, dir, x.env)
	for _, name := range x.secrets {
		found := false
		for _, s := range cat.All() {
			if slices.Contains(s.SecretNames, name) {
				found = true
				if v := orig[s.Name][name]; v != "" && strings.Contains(string(text), v) {
					t.Errorf("secret %s's value is in the catalog", name)
				}
			}
		}
		if !found {
			t.Errorf("%s is not a secret:\n%s", name, text)
		}
	}
	// The secrets take the values the original's containers see, as
	// secrets.Resolve would give them from outside the catalog.
	for _, s := range cat.All() {
		for _, n := range s.SecretNames {
			if s.Secrets == nil {
				s.Secrets = map[string]string{}
			}
			s.Secrets[n] = orig[s.Name][n]
		}
	}
	tree, err := render.Render(cat, cat.Environments["dev"], render.Options{Build: true})
	if err != nil {
		t.Fatalf("render: %v\n%s", err, text)
	}
	deploy := filepath.Join(catDir, "deployment")
	if _, err := render.Write(deploy, tree, render.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	// Every compose command at once; the rendered file must always be
	// good, the original's config is compared where a round trip holds.
	var runs []*configRun
	for _, c := range clis {
		runs = append(runs, &configRun{c: c, dir: deploy})
		if x.refused == "" && (x.v1Only == "" || c.name == "v1") {
			runs = append(runs, ahead[c.name+" "+dir])
		}
	}
	configs(t, runs)
	if x.refused != "" {
		t.Logf("round trip refused (%s): %s", x.refusedAs, x.refused)
		return
	}
	if x.v1Only != "" {
		t.Logf("round trip under v2 not applicable: %s", x.v1Only)
	}
	for i := 0; i+1 < len(runs); i++ {
		if runs[i+1].file != "" && runs[i+1].c.name == runs[i].c.name {
			roundTrip(t, runs[i].c.name, cat, runs[i+1].doc, runs[i].doc)
		}
	}
}

// configRun is one `config` of configs: its command line, folder, file
// and environment, and what it reported; done, when set, is closed once
// it ran ahead.
type configRun struct {
	c         cli
	dir, file string
	env       []string
	doc       map[string]any
	err       error
	done      chan struct{}
}

// configs runs them all at once, or waits for those that ran ahead.
func configs(t *testing.T, runs []*configRun) {
	t.Helper()
	var wg sync.WaitGroup
	for _, r := range runs {
		wg.Go(func() {
			if r.done != nil {
				<-r.done
				return
			}
			r.doc, r.err = configOf(r.c, r.dir, r.file, r.env)
		})
	}
	wg.Wait()
	for _, r := range runs {
		if r.err != nil {
			t.Fatal(r.err)
		}
	}
}

// originalValues are the environments the original's containers get, by
// catalog name, as compose-go loads the file.
func originalValues(t *testing.T, dir string, env []string) map[string]map[string]string {
	t.Helper()
	path, err := resolveFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	f, err := readCompose(context.Background(), path, path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]string{}
	for name, s := range f.project.Services {
		vals := map[string]string{}
		for k, v := range s.Environment {
			if v != nil {
				vals[k] = *v
			} else if val, ok := f.env[k]; ok {
				vals[k] = val
			}
		}
		for _, kv := range env {
			k, v, _ := strings.Cut(kv, "=")
			if _, ok := s.Environment[k]; ok {
				vals[k] = v
			}
		}
		out[catalogName(name)] = vals
	}
	return out
}

// roundTrip compares each imported service as `config` reports it.
func roundTrip(t *testing.T, cliName string, cat *catalog.Catalog, want, got map[string]any) {
	t.Helper()
	wantSvcs, _ := want["services"].(map[string]any)
	gotSvcs, _ := got["services"].(map[string]any)
	for name, w := range wantSvcs {
		g, ok := gotSvcs[catalogName(name)]
		if !ok {
			t.Errorf("%s: service %s not rendered", cliName, name)
			continue
		}
		wm, gm := fileSecrets(w.(map[string]any), g.(map[string]any))
		wn := normalize(wm, want)
		gn := normalize(gm, got)
		wj, _ := json.MarshalIndent(wn, "", "  ")
		gj, _ := json.MarshalIndent(gn, "", "  ")
		if !bytes.Equal(wj, gj) {
			t.Errorf("compose %s config of %s differs:\noriginal:\n%s\nrendered:\n%s", cliName, name, wj, gj)
		} else if testing.Verbose() {
			t.Logf("compose %s: %s equal in %s", cliName, name, strings.Join(slices.Sorted(mapKeys(wn)), ", "))
		}
	}
	if len(gotSvcs) != len(wantSvcs) {
		t.Errorf("%s: %d services rendered, %d in the original", cliName, len(gotSvcs), len(wantSvcs))
	}
}

// fileSecrets maps the original's file secrets as import does: each
// becomes a variable of the rendered service's environment.
func fileSecrets(want, got map[string]any) (map[string]any, map[string]any) {
	list, ok := want["secrets"].([]any)
	if !ok {
		return want, got
	}
	want, got = cloneMap(want), cloneMap(got)
	delete(want, "secrets")
	env, _ := got["environment"].(map[string]any)
	env = cloneMap(env)
	for _, s := range list {
		name := fmt.Sprint(s)
		if m, ok := s.(map[string]any); ok {
			name = fmt.Sprint(m["source"])
		}
		delete(env, name)
	}
	got["environment"] = env
	if len(env) == 0 {
		delete(got, "environment")
	}
	return want, got
}

// normalize leaves out what the tool adds or maps on purpose, as the
// README lists it, and writes equivalent forms alike:
//
//   - its labels (io.maestro.*);
//   - the shared network: the service joins project.network instead of
//     the file's networks (which carry no options: import refuses those),
//     or instead of the default network (network_mode bridge for the
//     version 1 format, under compose v1);
//   - per-environment ports: the host port and address; the container
//     port and protocol stay;
//   - the image name of a built service (the tool tags its builds
//     <project>/<service>);
//   - the x-maestro extension, which import reads;
//   - container_name, which import drops (a note);
//
// and, as equal forms: an environment value written as a number or as a
// string (the container gets a string; v1's config echoes the YAML type),
// no restart and restart "no" (docker's default), no
// dockerfile and "Dockerfile",
// depends_on as a list and as service_started conditions, a volume
// declared with and without the local driver.
func normalize(svc map[string]any, doc map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range svc {
		out[k] = v
	}
	if l, ok := out["labels"].(map[string]any); ok {
		keep := map[string]any{}
		for k, v := range l {
			if !strings.HasPrefix(k, "io.maestro.") {
				keep[k] = v
			}
		}
		out["labels"] = keep
		if len(keep) == 0 {
			delete(out, "labels")
		}
	}
	if nets, ok := out["networks"].(map[string]any); ok {
		plain := true
		for _, v := range nets {
			if m, ok := v.(map[string]any); ok && len(m) > 0 {
				plain = false
			}
		}
		if plain {
			delete(out, "networks")
		}
	} else if nets, ok := out["networks"].([]any); ok && len(nets) > 0 {
		delete(out, "networks")
	}
	if out["network_mode"] == "bridge" {
		delete(out, "network_mode")
	}
	if ports, ok := out["ports"].([]any); ok {
		var targets []string
		for _, p := range ports {
			targets = append(targets, portTarget(p))
		}
		out["ports"] = targets
	}
	if b, built := out["build"].(map[string]any); built {
		delete(out, "image")
		if b["dockerfile"] == "Dockerfile" { // docker's default, which render writes
			b = cloneMap(b)
			delete(b, "dockerfile")
			out["build"] = b
		}
	}
	delete(out, "x-maestro")
	delete(out, "container_name")
	if env, ok := out["environment"].(map[string]any); ok {
		strs := map[string]any{}
		for k, v := range env {
			if v != nil {
				v = fmt.Sprint(v)
			}
			strs[k] = v
		}
		out["environment"] = strs
	}
	if out["restart"] == "no" {
		delete(out, "restart")
	}
	if deps, ok := out["depends_on"].([]any); ok {
		m := map[string]any{}
		for _, d := range deps {
			m[fmt.Sprint(d)] = map[string]any{"condition": "service_started"}
		}
		out["depends_on"] = m
	}
	// The named volumes it mounts, as declared.
	vols, _ := doc["volumes"].(map[string]any)
	declared := map[string]any{}
	for name, v := range vols {
		if strings.Contains(fmt.Sprint(out["volumes"]), name) {
			if m, ok := v.(map[string]any); ok && m["driver"] == "local" {
				m = cloneMap(m)
				delete(m, "driver")
				v = m
			}
			if v == nil {
				v = map[string]any{}
			}
			declared[name] = v
		}
	}
	if len(declared) > 0 {
		out["(declared volumes)"] = declared
	}
	return out
}

func cloneMap(m map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

// portTarget is a port's container side and protocol: "80/tcp".
func portTarget(p any) string {
	switch p := p.(type) {
	case map[string]any:
		proto := fmt.Sprint(p["protocol"])
		if p["protocol"] == nil {
			proto = "tcp"
		}
		return fmt.Sprintf("%v/%s", p["target"], proto)
	case string:
		spec, proto, ok := strings.Cut(p, "/")
		if !ok {
			proto = "tcp"
		}
		parts := strings.Split(spec, ":")
		return parts[len(parts)-1] + "/" + proto
	}
	return fmt.Sprint(p)
}

func mapKeys(m map[string]any) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}
