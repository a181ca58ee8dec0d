package tasks_test

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/magefile/mage/mage"

	"github.com/maestro-platform/deploy/internal/testenv"
)

// A team's own magefile imports the runner's targets and adds one of its
// own: extending in Go works, and both kinds of target run.
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
	write(t, filepath.Join(dir, "magefile.go"), `//go:build mage

package main

import (
	"fmt"
	"os"

	//mage:import
	_ "github.com/maestro-platform/deploy/tasks"
	"github.com/maestro-platform/deploy/tasks/catalog"
)

// Inventory lists the catalog's services with their dev ports.
func Inventory() error {
	cat, err := catalog.Load(os.Getenv("DEPLOY_CATALOG"))
	if err != nil {
		return err
	}
	for _, s := range cat.Services {
		fmt.Printf("inventory %s %d\n", s.Name, s.DevPort)
	}
	return nil
}
`)
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

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}
