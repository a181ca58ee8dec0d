package tasks_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/magefile/mage/mage"

	"github.com/maestro-platform/deploy/internal/testenv"
)

// A team's own magefile (the README's) imports the runner's targets and
// adds one of its own: extending in Go works, and both kinds of target run.
func TestMageImportExtends(t *testing.T) {
	repo := testenv.RepoRoot()
	dir := t.TempDir()
	mod := "module example.com/platform-ops\n\ngo 1.26\n\nrequire github.com/maestro-platform/deploy v0.0.0\n\nreplace github.com/maestro-platform/deploy => " + repo + "\n"
	write(t, filepath.Join(dir, "go.mod"), mod)
	sum, err := os.ReadFile(filepath.Join(repo, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "go.sum"), string(sum))
	write(t, filepath.Join(dir, "magefile.go"), readmeBlocks(t, extending, "go")[0])
	p := testenv.SamplePlatform(t, "ext")
	t.Setenv("DEPLOY_CATALOG", p.Catalog)
	t.Setenv("GOFLAGS", "-mod=mod")
	t.Setenv("NO_COLOR", "1")

	invoke := func(inv mage.Invocation) (string, int) {
		var out bytes.Buffer
		inv.Dir, inv.WorkDir, inv.Stdout, inv.Stderr = dir, dir, &out, &out
		inv.CacheDir = filepath.Join(dir, ".magecache")
		code := mage.Invoke(inv)
		return out.String(), code
	}
	list, code := invoke(mage.Invocation{List: true})
	if code != 0 {
		t.Fatalf("mage -l: exit %d\n%s", code, list)
	}
	for _, target := range []string{"inventory", "deployAll", "render", "promote", "testAll", "doctor"} {
		if !strings.Contains(list, target) {
			t.Errorf("mage -l lacks %s:\n%s", target, list)
		}
	}
	// A target's help says what each of its flags does.
	help, code := invoke(mage.Invocation{Help: true, Args: []string{"promote"}})
	for _, want := range []string{"-env=NAME the environment (default demo)", "-force ships even what", "-wait waits for another"} {
		if code != 0 || !strings.Contains(strings.Join(strings.Fields(help), " "), want) {
			t.Errorf("mage -h promote (exit %d) lacks %q:\n%s", code, want, help)
		}
	}
	out, code := invoke(mage.Invocation{Args: []string{"inventory"}})
	if code != 0 || !strings.Contains(out, "inventory maestro-gateway "+strconv.Itoa(p.DevPorts["maestro-gateway"])) {
		t.Errorf("own target: exit %d\n%s", code, out)
	}
	// A target given an option it does not take stops the whole command
	// line before anything runs: here render, which would write the folder.
	out, code = invoke(mage.Invocation{Args: []string{"render", "build", "-env=demo"}})
	if code != 2 || !strings.Contains(out, "build does not take -env=demo (it takes no option; `mage -h build` describes it); nothing was run") {
		t.Errorf("render build -env=demo: exit %d, want 2 naming the option\n%s", code, out)
	}
	if _, err := os.Stat(p.Deploy); !os.IsNotExist(err) {
		t.Errorf("render ran before the bad option was refused: %s exists", p.Deploy)
	}
	// Taking a remote environment down asks for -yes, before connecting.
	out, code = invoke(mage.Invocation{Args: []string{"down", "-env=demo"}})
	if code != 2 || !strings.Contains(out, "down -env=demo takes demo's stack and proxy off its host: add -yes to go ahead") {
		t.Errorf("down -env=demo without -yes: exit %d, want 2 asking for -yes\n%s", code, out)
	}
	// An imported target runs too: plan of a folder never rendered reports
	// changes (exit 3) and names the compose file.
	out, code = invoke(mage.Invocation{Args: []string{"plan"}})
	if code != 3 || !strings.Contains(out, "docker-compose.yml") {
		t.Errorf("imported plan: exit %d, want 3\n%s", code, out)
	}
	// Changes found is plan's answer, not an error.
	if strings.Contains(out, "Error:") || !strings.Contains(out, "run `mage render` to apply") {
		t.Errorf("plan's changes read as an error, or lack the hint:\n%s", out)
	}
	if _, err := os.Stat(p.Deploy); !os.IsNotExist(err) {
		t.Errorf("plan wrote %s", p.Deploy)
	}

	// A file edited by hand: plan points to the overwrite that works, and
	// the overwrite names the file it replaced and where the copy is.
	if out, code := invoke(mage.Invocation{Args: []string{"render"}}); code != 0 {
		t.Fatalf("render: exit %d\n%s", code, out)
	}
	edited := filepath.Join(p.Deploy, "template-service", "docker-compose.yml")
	b, err := os.ReadFile(edited)
	if err != nil {
		t.Fatal(err)
	}
	write(t, edited, string(b)+"# my edit\n")
	out, code = invoke(mage.Invocation{Args: []string{"plan"}})
	if code != 3 || strings.Contains(out, "Error:") || !strings.Contains(out, "template-service/docker-compose.yml was edited by hand") ||
		!strings.Contains(out, "`DEPLOY_OVERWRITE=1 mage render` replaces what was edited") || strings.Contains(out, "run `mage render` to apply") {
		t.Errorf("plan with a hand edit: exit %d, want 3 and the overwrite hint\n%s", code, out)
	}
	if out, code := invoke(mage.Invocation{Args: []string{"render"}}); code != 2 || !strings.Contains(out, "DEPLOY_OVERWRITE=1") {
		t.Errorf("render over a hand edit: exit %d, want 2 and the overwrite hint\n%s", code, out)
	}
	t.Setenv("DEPLOY_OVERWRITE", "1")
	out, code = invoke(mage.Invocation{Args: []string{"render"}})
	if code != 0 || !regexp.MustCompile(`template-service/docker-compose.yml +edited by hand: replaced; your version is kept in `+
		regexp.QuoteMeta(p.Deploy)+`/\.backup/[0-9TZ-]+/template-service/docker-compose.yml`).MatchString(out) {
		t.Errorf("overwrite: exit %d, want 0 and the file and its copy named\n%s", code, out)
	}
	os.Unsetenv("DEPLOY_OVERWRITE")

	// Unknown environments are bad arguments: exit 2, naming the known ones.
	t.Setenv("DEPLOY_ENV", "prod")
	if out, code := invoke(mage.Invocation{Args: []string{"render"}}); code != 2 || !strings.Contains(out, "known environments: demo, dev") {
		t.Errorf("DEPLOY_ENV=prod render: exit %d, want 2\n%s", code, out)
	}
	os.Unsetenv("DEPLOY_ENV")
	if out, code := invoke(mage.Invocation{Args: []string{"promote", "-env=staging"}}); code != 2 || !strings.Contains(out, "known environments: demo, dev") {
		t.Errorf("promote -env=staging: exit %d, want 2\n%s", code, out)
	}
}

// extending is the README's section on extending the targets.
const extending = "## Extending: your own targets"

// readmeBlocks returns the fenced code blocks of lang in the README's
// section under heading, in order.
func readmeBlocks(t *testing.T, heading, lang string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("README.md has no section %q", heading)
	}
	if i := strings.Index(section, "\n## "); i >= 0 {
		section = section[:i]
	}
	var out []string
	for _, m := range regexp.MustCompile("(?s)```"+lang+"\n(.*?)```").FindAllStringSubmatch(section, -1) {
		out = append(out, m[1])
	}
	if len(out) == 0 {
		t.Fatalf("README.md's %q has no %s block", heading, lang)
	}
	return out
}

// The README's words on extending, followed exactly in a new module: its
// commands, its magefile, then mage from the module graph runs the
// module's own target beside deployAll, on ./services.toml with
// DEPLOY_CATALOG unset. The one substitution is the README's placeholder
// for the checkout of this repository.
func TestExtendingAsTheReadmeSays(t *testing.T) {
	testenv.RequireDocker(t)
	testenv.RequireCommand(t, "docker-compose")
	repo := testenv.RepoRoot()
	steps := readmeBlocks(t, extending, "sh")
	if len(steps) != 2 {
		t.Fatalf("the README's %q has %d sh blocks, want 2 (before and after the magefile)", extending, len(steps))
	}
	magefile := readmeBlocks(t, extending, "go")[0]
	p := testenv.SamplePlatform(t, "xrd")
	dir := t.TempDir()
	// The sample catalog as the folder's own ./services.toml, its sources
	// where SamplePlatform put them.
	cat, err := os.ReadFile(p.Catalog)
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "services.toml"), strings.ReplaceAll(string(cat), `"examples/`, `"`+p.Root+`/examples/`))
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DEPLOY_") && !strings.HasPrefix(kv, "MAGEFILE_") {
			env = append(env, kv)
		}
	}
	env = append(env, "NO_COLOR=1", "MAGEFILE_CACHE="+filepath.Join(t.TempDir(), "magecache"))
	sh := func(line string) string {
		t.Helper()
		cmd := exec.Command("bash", "-c", strings.ReplaceAll(line, "$HOME/src/deploy", repo))
		cmd.Dir, cmd.Env = dir, env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", line, err, out)
		}
		return string(out)
	}
	run := func(block string) string {
		var out string
		for _, line := range strings.Split(block, "\n") {
			if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
				out = sh(line)
			}
		}
		return out
	}
	run(steps[0])
	write(t, filepath.Join(dir, "magefile.go"), magefile)
	list := run(steps[1])
	for _, target := range []string{"inventory", "deployAll"} {
		if !strings.Contains(list, target) {
			t.Errorf("the README's last command lists no %s:\n%s", target, list)
		}
	}
	t.Cleanup(func() {
		cmd := exec.Command("go", "run", "github.com/magefile/mage", "down", "-volumes")
		cmd.Dir, cmd.Env = dir, env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Logf("down: %v\n%s", err, out)
		}
		p.RemoveImages(context.Background())
	})
	if out := sh("go run github.com/magefile/mage deployAll"); !strings.Contains(out, "deployAll dev: "+p.Deploy) {
		t.Errorf("deployAll in the new module:\n%s", out)
	}
	if out := sh("go run github.com/magefile/mage inventory"); !strings.Contains(out, "inventory maestro-gateway "+strconv.Itoa(p.DevPorts["maestro-gateway"])) {
		t.Errorf("the module's own target:\n%s", out)
	}
}

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}
