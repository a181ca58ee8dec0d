package render_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/render"
)

func writeDev(t *testing.T, cat *catalog.Catalog, dir string) (render.Tree, *render.WriteResult) {
	t.Helper()
	tree := mustRender(t, cat, "dev", render.Options{Build: true})
	res, err := render.Write(dir, tree, render.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tree, res
}

func TestWriteFreshThenUnchanged(t *testing.T) {
	cat := loadRepo(t)
	dir := filepath.Join(t.TempDir(), "deployment")
	tree, res := writeDev(t, cat, dir)
	if len(res.Written) != len(tree) || len(res.Unchanged) != 0 {
		t.Fatalf("fresh write: %d written, %d unchanged, want %d and 0", len(res.Written), len(res.Unchanged), len(tree))
	}
	for _, f := range tree {
		fi, err := os.Stat(filepath.Join(dir, f.Path))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != f.Mode {
			t.Errorf("%s on disk mode %v, want %v", f.Path, fi.Mode().Perm(), f.Mode)
		}
	}
	for _, p := range []string{".env", "maestro-gateway/.env", "infrastructure/.env"} {
		if fi, _ := os.Stat(filepath.Join(dir, p)); fi == nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s is not 0600", p)
		}
	}
	for _, p := range []string{"deploy-all.sh", "test-all.sh"} {
		if fi, _ := os.Stat(filepath.Join(dir, p)); fi == nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("%s is not 0755", p)
		}
	}
	// Secrets never reach a compose file; they are in the .env files only.
	secret := cat.Services[len(cat.Services)-1].Secrets["GATEWAY_API_TOKEN"]
	if secret == "" {
		t.Fatal("the repo catalog's gateway secret is gone: the test needs one")
	}
	for _, f := range tree {
		inFile := strings.Contains(string(f.Data), secret)
		if (strings.HasSuffix(f.Path, ".yml") || strings.HasSuffix(f.Path, render.EnvExample)) && inFile {
			t.Errorf("secret value in %s", f.Path)
		}
		if (f.Path == ".env" || f.Path == "maestro-gateway/.env") && !inFile {
			t.Errorf("secret value missing from %s", f.Path)
		}
	}
	before := snapshot(t, dir)
	res, err := render.Write(dir, tree, render.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Changed() || len(res.Unchanged) != len(tree) {
		t.Errorf("second write changed something: %+v", res)
	}
	sameSnapshot(t, "unchanged write", before, snapshot(t, dir))
}

func TestWriteCarriesUnmanagedAndRemovesOld(t *testing.T) {
	cat := loadRepo(t)
	dir := filepath.Join(t.TempDir(), "deployment")
	writeDev(t, cat, dir)
	user := map[string]string{
		"README.md":                     "my notes\n",
		"reports/run-1/report.json":     `{"ok":true}`,
		".state/images":                 "x",
		"template-service/NOTES.txt":    "kept beside a managed file\n",
		"quality-fabric/extra/conf.ini": "a=1\n",
	}
	for p, c := range user {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "empty-user-dir"), 0o700); err != nil {
		t.Fatal(err)
	}
	// Drop k8s-execution-service from the catalog: its folder goes.
	var keep []*catalog.Service
	for _, s := range cat.Services {
		if s.Name != "k8s-execution-service" {
			keep = append(keep, s)
		}
	}
	for _, s := range keep {
		var deps []string
		for _, d := range s.DependsOn {
			if d != "k8s-execution-service" {
				deps = append(deps, d)
			}
		}
		s.DependsOn = deps
	}
	cat.Services = keep
	_, res := writeDev(t, cat, dir)
	for p, c := range user {
		b, err := os.ReadFile(filepath.Join(dir, p))
		if err != nil || string(b) != c {
			t.Errorf("unmanaged %s not carried over: %q, %v", p, b, err)
		}
		if fi, _ := os.Stat(filepath.Join(dir, p)); fi == nil || fi.Mode().Perm() != 0o640 {
			t.Errorf("unmanaged %s lost its mode", p)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "empty-user-dir")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("empty user folder not carried over: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "k8s-execution-service")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("folder of a removed service is still there: %v", err)
	}
	want := []string{"k8s-execution-service/.env", "k8s-execution-service/.env.example", "k8s-execution-service/docker-compose.yml"}
	if strings.Join(res.Removed, ",") != strings.Join(want, ",") {
		t.Errorf("removed %v, want %v", res.Removed, want)
	}
	assertNoTemp(t, dir)
}

func assertNoTemp(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Dir(dir))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), ".render-") || strings.Contains(e.Name(), ".old-") {
			t.Errorf("temporary folder left behind: %s", e.Name())
		}
	}
}

func TestDrift(t *testing.T) {
	cat := loadRepo(t)
	dir := filepath.Join(t.TempDir(), "deployment")
	tree, _ := writeDev(t, cat, dir)
	edited := filepath.Join(dir, "template-service", "docker-compose.yml")
	b, _ := os.ReadFile(edited)
	handEdit := append(b, []byte("# my change\n")...)
	if err := os.WriteFile(edited, handEdit, 0o644); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dir)
	_, err := render.Write(dir, tree, render.WriteOptions{})
	var drift *render.DriftError
	if !errors.As(err, &drift) {
		t.Fatalf("write over a hand edit: %v, want *DriftError", err)
	}
	if strings.Join(drift.Files, ",") != "template-service/docker-compose.yml" {
		t.Errorf("drift names %v", drift.Files)
	}
	for _, want := range []string{"template-service/docker-compose.yml", "DEPLOY_OVERWRITE=1", "overwrite"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("drift error %q does not say %q", err, want)
		}
	}
	sameSnapshot(t, "refused write", before, snapshot(t, dir))
	diff, changed, err := render.Plan(dir, tree)
	if err != nil || !changed || !strings.Contains(diff, "edited by hand") || !strings.Contains(diff, "-# my change") {
		t.Errorf("plan over a hand edit: changed=%v err=%v\n%s", changed, err, diff)
	}

	res, err := render.Write(dir, tree, render.WriteOptions{Overwrite: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.BackedUp) != 1 || res.BackedUp[0].File != "template-service/docker-compose.yml" ||
		!strings.HasPrefix(res.BackedUp[0].Copy, ".backup/") || !strings.HasSuffix(res.BackedUp[0].Copy, "/template-service/docker-compose.yml") {
		t.Fatalf("backups %v", res.BackedUp)
	}
	got, err := os.ReadFile(filepath.Join(dir, res.BackedUp[0].Copy))
	if err != nil || string(got) != string(handEdit) {
		t.Errorf("backup does not hold the hand edit: %v", err)
	}
	f, _ := tree.File("template-service/docker-compose.yml")
	if now, _ := os.ReadFile(edited); string(now) != string(f.Data) {
		t.Error("overwrite did not restore the rendered file")
	}
	// The backup is the user's now: a later write keeps it and is clean.
	if res, err := render.Write(dir, tree, render.WriteOptions{}); err != nil || res.Changed() {
		t.Errorf("write after overwrite: %+v, %v", res, err)
	}
}

func TestDriftUnmanagedFileInTheWay(t *testing.T) {
	cat := loadRepo(t)
	dir := filepath.Join(t.TempDir(), "deployment")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// The platform team's old hand-made script.
	if err := os.WriteFile(filepath.Join(dir, "deploy-all.sh"), []byte("#!/bin/sh\ncd ~/src && docker-compose up\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tree := mustRender(t, cat, "dev", render.Options{})
	before := snapshot(t, dir)
	_, err := render.Write(dir, tree, render.WriteOptions{})
	var drift *render.DriftError
	if !errors.As(err, &drift) || strings.Join(drift.Files, ",") != "deploy-all.sh" {
		t.Fatalf("write over an unmanaged deploy-all.sh: %v", err)
	}
	sameSnapshot(t, "refused write", before, snapshot(t, dir))
}

func TestCrashLeavesOldFolder(t *testing.T) {
	cat := loadRepo(t)
	dir := filepath.Join(t.TempDir(), "deployment")
	writeDev(t, cat, dir)
	if err := os.WriteFile(filepath.Join(dir, "README.md"), []byte("mine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dir)
	cat.Services[0].Env["LOG_LEVEL"] = "debug"
	tree := mustRender(t, cat, "dev", render.Options{Build: true})

	boom := errors.New("simulated crash")
	t.Run("before swap", func(t *testing.T) {
		defer render.SetTestHookBeforeSwap(func() error { return boom })()
		if _, err := render.Write(dir, tree, render.WriteOptions{}); !errors.Is(err, boom) {
			t.Fatalf("write: %v, want the hook's error", err)
		}
		sameSnapshot(t, "failed write", before, snapshot(t, dir))
		assertNoTemp(t, dir)
	})
	t.Run("while writing files", func(t *testing.T) {
		n := 0
		defer render.SetTestHookWriteFile(func(string) error {
			if n++; n == 4 {
				return boom
			}
			return nil
		})()
		if _, err := render.Write(dir, tree, render.WriteOptions{}); !errors.Is(err, boom) {
			t.Fatalf("write: %v, want the hook's error", err)
		}
		sameSnapshot(t, "failed write", before, snapshot(t, dir))
		assertNoTemp(t, dir)
	})
	t.Run("interrupted swap is recovered", func(t *testing.T) {
		// A crash between the two renames of the fallback swap leaves the
		// old folder aside and nothing in its place.
		aside := filepath.Join(filepath.Dir(dir), ".deployment.old-123456")
		if err := os.Rename(dir, aside); err != nil {
			t.Fatal(err)
		}
		res, err := render.Write(dir, tree, render.WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// template-service's block is in its own folder's file and in those
		// of the services that depend on it; k8s-execution-service's holds
		// none of it.
		if !contains(res.Written, "template-service/docker-compose.yml") || !contains(res.Written, "quality-fabric/docker-compose.yml") ||
			contains(res.Written, "k8s-execution-service/docker-compose.yml") {
			t.Errorf("written %v", res.Written)
		}
		if b, err := os.ReadFile(filepath.Join(dir, "README.md")); err != nil || string(b) != "mine\n" {
			t.Errorf("the recovered folder lost README.md: %v", err)
		}
		assertNoTemp(t, dir)
	})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestValidationFailureWritesNothing(t *testing.T) {
	cat := loadRepo(t)
	dir := filepath.Join(t.TempDir(), "deployment")
	tree, _ := writeDev(t, cat, dir)
	before := snapshot(t, dir)

	t.Run("compose-go rejects", func(t *testing.T) {
		defer render.SetTestHookRendered(func(path string, data []byte) []byte {
			if path == "template-service/docker-compose.yml" {
				return []byte(strings.Replace(string(data), "restart: unless-stopped", "restart: 12", 1))
			}
			return data
		})()
		got, err := render.Render(cat, cat.Environments["dev"], render.Options{Build: true})
		if err == nil || !strings.Contains(err.Error(), "template-service/docker-compose.yml") || !strings.Contains(err.Error(), "compose-go") {
			t.Fatalf("render of an invalid file: %v", err)
		}
		if got != nil {
			t.Error("a failed render returned files")
		}
	})
	t.Run("secret that .env cannot carry", func(t *testing.T) {
		gw := cat.Services[len(cat.Services)-1]
		old := gw.Secrets["GATEWAY_API_TOKEN"]
		defer func() { gw.Secrets["GATEWAY_API_TOKEN"] = old }()
		bad := "a\x00b$"
		gw.Secrets["GATEWAY_API_TOKEN"] = bad
		_, err := render.Render(cat, cat.Environments["dev"], render.Options{})
		if err == nil || !strings.Contains(err.Error(), "maestro-gateway") || !strings.Contains(err.Error(), "GATEWAY_API_TOKEN") {
			t.Errorf("secret with a NUL byte: %v, want an error naming the service and key", err)
		} else if strings.Contains(err.Error(), bad) {
			t.Errorf("the error shows the secret value: %v", err)
		}
		// '$' with quotes, backslashes and line breaks is carried: the
		// render's own check reads the .env back with compose-go.
		for _, v := range []string{"a${X}b", `it's $5`, `back\slash $x`, "$'\"\\\n${HOME}$$"} {
			gw.Secrets["GATEWAY_API_TOKEN"] = v
			if _, err := render.Render(cat, cat.Environments["dev"], render.Options{}); err != nil {
				t.Errorf("secret %q: %v", v, err)
			}
		}
	})
	t.Run("bad tree", func(t *testing.T) {
		bad := append(render.Tree{{Path: "../escape", Data: []byte("x"), Mode: 0o644}}, tree...)
		if _, err := render.Write(dir, bad, render.WriteOptions{}); err == nil {
			t.Error("a tree with ../ was written")
		}
	})
	sameSnapshot(t, "failed renders", before, snapshot(t, dir))
}

func TestPlan(t *testing.T) {
	cat := loadRepo(t)
	dir := filepath.Join(t.TempDir(), "deployment")
	diff, changed, err := render.Plan(dir, mustRender(t, cat, "dev", render.Options{}))
	if err != nil || !changed || !strings.Contains(diff, "+++ b/docker-compose.yml") {
		t.Fatalf("plan of a missing folder: %v %v\n%.400s", changed, err, diff)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("plan created the folder")
	}
	writeDev(t, cat, dir)
	before := snapshot(t, dir)
	diff, changed, err = render.Plan(dir, mustRender(t, cat, "dev", render.Options{Build: true}))
	if err != nil || changed || diff != "" {
		t.Fatalf("plan after write: changed=%v err=%v diff=%q", changed, err, diff)
	}
	cat.Services[0].Env["LOG_LEVEL"] = "debug"
	cat.Services[len(cat.Services)-1].Secrets["GATEWAY_API_TOKEN"] = "new-secret-value"
	diff, changed, err = render.Plan(dir, mustRender(t, cat, "dev", render.Options{Build: true}))
	if err != nil || !changed {
		t.Fatalf("plan after a catalog change: changed=%v err=%v", changed, err)
	}
	for _, want := range []string{
		"--- a/template-service/docker-compose.yml", "+++ b/template-service/docker-compose.yml",
		`-      "LOG_LEVEL": "info"`, `+      "LOG_LEVEL": "debug"`, "@@",
		"maestro-gateway/.env: secret values change (not shown)",
	} {
		if !strings.Contains(diff, want) {
			t.Errorf("plan diff lacks %q:\n%s", want, diff)
		}
	}
	if strings.Contains(diff, "new-secret-value") || strings.Contains(diff, "change-me-dev-token") {
		t.Errorf("plan shows a secret:\n%s", diff)
	}
	if strings.Contains(diff, "k8s-execution-service/") {
		t.Errorf("plan names a file that does not change:\n%s", diff)
	}
	sameSnapshot(t, "plan", before, snapshot(t, dir))
}

// A deployment folder that is a symbolic link is written where it points:
// the link stays, and what lives beside the rendered files (state,
// reports) stays with them.
func TestWriteThroughALinkedDeployDir(t *testing.T) {
	cat := loadRepo(t)
	root := t.TempDir()
	real := filepath.Join(root, "data", "deployment")
	if err := os.MkdirAll(filepath.Join(real, ".state"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(real, ".state", "last-testall.json"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(root, "deployment")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	writeDev(t, cat, link)
	qf, _ := cat.Service("quality-fabric")
	qf.Env["LOG_LEVEL"] = "debug" // a change: the folder is swapped again
	writeDev(t, cat, link)
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the deployment link was replaced: %v %v", fi, err)
	}
	for _, p := range []string{".state/last-testall.json", "docker-compose.yml"} {
		if _, err := os.Stat(filepath.Join(real, p)); err != nil {
			t.Errorf("%s not in the link's target: %v", p, err)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(link, "quality-fabric", "docker-compose.yml")); !strings.Contains(string(b), "debug") {
		t.Error("the second write did not reach the folder behind the link")
	}
}

// A service folder that is a symbolic link is refused: render would
// write the compose file and the 0600 .env wherever it points.
func TestWriteRefusesALinkedServiceFolder(t *testing.T) {
	cat := loadRepo(t)
	dir := filepath.Join(t.TempDir(), "deployment")
	writeDev(t, cat, dir)
	elsewhere := t.TempDir()
	svc := filepath.Join(dir, "maestro-gateway")
	if err := os.RemoveAll(svc); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, svc); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dir)
	tree := mustRender(t, cat, "dev", render.Options{Build: true})
	_, err := render.Write(dir, tree, render.WriteOptions{Overwrite: true})
	if err == nil || !strings.Contains(err.Error(), "maestro-gateway/ is a symbolic link") || !strings.Contains(err.Error(), elsewhere) {
		t.Fatalf("write over a linked service folder: %v", err)
	}
	if entries, _ := os.ReadDir(elsewhere); len(entries) != 0 {
		t.Errorf("render wrote through the link: %v", entries)
	}
	sameSnapshot(t, "refused write", before, snapshot(t, dir))
}
