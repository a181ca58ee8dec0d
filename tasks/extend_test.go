package tasks_test

import (
	"bytes"
	"os"
	"path/filepath"
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
	if _, err := os.Stat(p.Deploy); !os.IsNotExist(err) {
		t.Errorf("plan wrote %s", p.Deploy)
	}
}

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}
