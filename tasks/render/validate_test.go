package render_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/render"
)

// TestValidationAgreesWithLoader breaks a rendered compose file in ways
// compose-go's whole loader rejects, and checks that Render's cheaper check
// rejects each too, naming the file.
func TestValidationAgreesWithLoader(t *testing.T) {
	cat := loadRepo(t)
	const target = "template-service/docker-compose.yml"
	good := mustRender(t, cat, "dev", render.Options{Build: true})
	orig, ok := good.File(target)
	if !ok {
		t.Fatalf("%s not rendered", target)
	}
	if err := loadFull(cat.Project.Name, good, target, orig.Data); err != nil {
		t.Fatalf("the loader rejects the unbroken file: %v", err)
	}
	cases := []struct {
		name, old, new string
		// loaderAccepts marks a break that compose-go's loader lets
		// through and Render refuses: an environment other than the
		// catalog's, or a second YAML document (which the loader merges
		// in, and render never writes).
		loaderAccepts bool
	}{
		{name: "schema type", old: "restart: unless-stopped", new: "restart: 12"},
		{name: "unknown key", old: "restart: unless-stopped", new: "restart: unless-stopped\n    restart_always: true"},
		{name: "port syntax", old: `"127.0.0.1:9005:8005"`, new: `"127.0.0.1:90x5:8005"`},
		{name: "port range", old: `"127.0.0.1:9005:8005"`, new: `"127.0.0.1:99005:8005"`},
		{name: "port address", old: `"127.0.0.1:9005:8005"`, new: `"127.0.0.256:9005:8005"`},
		{name: "undefined network", old: "    networks:\n      - \"platform\"", new: "    networks:\n      - \"elsewhere\""},
		{name: "undefined volume", old: "restart: unless-stopped", new: "restart: unless-stopped\n    volumes:\n      - \"ghost:/data\""},
		{name: "volume syntax", old: "restart: unless-stopped", new: "restart: unless-stopped\n    volumes:\n      - \"\""},
		{name: "undefined dependency", old: "restart: unless-stopped", new: "restart: unless-stopped\n    depends_on:\n      - \"nobody\""},
		{name: "duration", old: "interval: 30s", new: "interval: 2 parsecs"},
		{name: "healthcheck form", old: `test: ["CMD", `, new: `test: ["RUN", `},
		{name: "YAML syntax", old: `"LOG_LEVEL": "info"`, new: `"LOG_LEVEL": "info`},
		{name: "second document", old: "networks:\n  \"platform\"", new: "---\nnetworks:\n  \"platform\"", loaderAccepts: true},
		{name: "undefined variable", old: `"LOG_LEVEL": "info"`, new: `"LOG_LEVEL": "${UNSET:?must be set}"`},
		{name: "environment value", old: `"LOG_LEVEL": "info"`, new: `"LOG_LEVEL": "debug"`, loaderAccepts: true},
		{name: "environment variable", old: `"LOG_LEVEL": "info"`, new: `"LOG_LEVEL": "info"` + "\n      \"EXTRA\": \"x\"", loaderAccepts: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			broken := []byte(strings.Replace(string(orig.Data), tc.old, tc.new, 1))
			if string(broken) == string(orig.Data) {
				t.Fatalf("%q is not in the rendered file", tc.old)
			}
			if err := loadFull(cat.Project.Name, good, target, broken); (err == nil) != tc.loaderAccepts {
				t.Fatalf("compose-go's loader: %v, want it to accept=%v", err, tc.loaderAccepts)
			}
			defer render.SetTestHookRendered(func(path string, data []byte) []byte {
				if path == target {
					return broken
				}
				return data
			})()
			tree, err := render.Render(cat, cat.Environments["dev"], render.Options{Build: true})
			if err == nil || !strings.Contains(err.Error(), target) {
				t.Fatalf("render: %v, want an error naming %s", err, target)
			}
			if tree != nil {
				t.Error("a failed render returned files")
			}
		})
	}
}

// validated records the compose files checked while it is set.
type validated struct {
	mu    sync.Mutex
	paths []string
}

func (v *validated) add(p string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.paths = append(v.paths, p)
}

func (v *validated) take() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := v.paths
	v.paths = nil
	sort.Strings(out)
	return out
}

// TestDeferredValidation: with DeferValidation, Write and Plan check the
// compose files they change (or whose .env they change) and no others; an
// invalid one stops them with nothing changed.
func TestDeferredValidation(t *testing.T) {
	cat := loadRepo(t)
	dir := filepath.Join(t.TempDir(), "deployment")
	var seen validated
	defer render.SetTestHookValidated(seen.add)()
	lazy := render.Options{Build: true, DeferValidation: true}

	tree := mustRender(t, cat, "dev", lazy)
	if got := seen.take(); len(got) != 0 {
		t.Fatalf("a deferred render validated %v", got)
	}
	var composeFiles []string
	for _, f := range tree {
		if filepath.Base(f.Path) == render.ComposeFile {
			composeFiles = append(composeFiles, f.Path)
		}
	}
	if _, changed, err := render.Plan(dir, tree); err != nil || !changed {
		t.Fatalf("plan of a new folder: %v %v", changed, err)
	}
	if got := seen.take(); strings.Join(got, ",") != strings.Join(composeFiles, ",") {
		t.Errorf("plan of a new folder validated %v, want %v", got, composeFiles)
	}
	if _, err := render.Write(dir, tree, render.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := seen.take(); strings.Join(got, ",") != strings.Join(composeFiles, ",") {
		t.Errorf("first write validated %v, want %v", got, composeFiles)
	}

	t.Run("noop", func(t *testing.T) {
		res, err := render.Write(dir, mustRender(t, cat, "dev", lazy), render.WriteOptions{})
		if err != nil || res.Changed() {
			t.Fatalf("noop write: %+v %v", res, err)
		}
		if _, changed, err := render.Plan(dir, mustRender(t, cat, "dev", lazy)); err != nil || changed {
			t.Fatalf("noop plan: %v %v", changed, err)
		}
		if got := seen.take(); len(got) != 0 {
			t.Errorf("noop write and plan validated %v", got)
		}
	})
	t.Run("file not recorded in the manifest", func(t *testing.T) {
		const target = "template-service/docker-compose.yml"
		m, err := render.ReadManifest(dir)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for i := range m.Files {
			if m.Files[i].Path == target {
				m.Files[i].SHA256 = strings.Repeat("0", 64)
				found = true
			}
		}
		b, _ := json.Marshal(m)
		if err := os.WriteFile(filepath.Join(dir, render.ManifestFile), b, 0o644); err != nil || !found {
			t.Fatalf("tamper with the manifest: %v (found %v)", err, found)
		}
		res, err := render.Write(dir, mustRender(t, cat, "dev", lazy), render.WriteOptions{})
		if err != nil || strings.Join(res.Written, ",") != render.ManifestFile {
			t.Fatalf("write: %+v %v", res, err)
		}
		if got := seen.take(); strings.Join(got, ",") != target {
			t.Errorf("validated %v, want only %s, which the manifest did not record", got, target)
		}
	})
	t.Run("one service and a secret change", func(t *testing.T) {
		cat := loadRepo(t)
		cat.Services[0].Env["LOG_LEVEL"] = "debug"
		gw := cat.Services[len(cat.Services)-1]
		gw.Secrets["GATEWAY_API_TOKEN"] = "rotated"
		if _, err := render.Write(dir, mustRender(t, cat, "dev", lazy), render.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		// The gateway's compose file is unchanged, but its .env is not; the
		// service's block is in its own folder's file and in those of the
		// services that depend on it (withDeps), the gateway's among them.
		want := []string{"docker-compose.yml", cat.Services[0].Name + "/docker-compose.yml", gw.Name + "/docker-compose.yml",
			"automation-service/docker-compose.yml", "quality-fabric/docker-compose.yml"}
		sort.Strings(want)
		if got := seen.take(); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("validated %v, want %v", got, want)
		}
	})
	t.Run("swarm stack file goes with the top .env", func(t *testing.T) {
		cat := loadRepo(t)
		cat.Environments["demo"].Engine = catalog.EngineSwarm
		dir := filepath.Join(t.TempDir(), "deployment")
		if _, err := render.Write(dir, mustRender(t, cat, "demo", lazy), render.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		if got := seen.take(); !contains(got, render.StackFile) {
			t.Errorf("first write validated %v, not the stack file", got)
		}
		gw := cat.Services[len(cat.Services)-1]
		gw.Secrets["GATEWAY_API_TOKEN"] = "rotated"
		if _, err := render.Write(dir, mustRender(t, cat, "demo", lazy), render.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		want := []string{"docker-compose.yml", render.StackFile, gw.Name + "/docker-compose.yml"}
		sort.Strings(want)
		if got := seen.take(); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("after a secret change validated %v, want %v", got, want)
		}
	})
	t.Run("invalid file", func(t *testing.T) {
		before := snapshot(t, dir)
		const target = "template-service/docker-compose.yml"
		defer render.SetTestHookRendered(func(path string, data []byte) []byte {
			if path == target {
				return []byte(strings.Replace(string(data), "restart: unless-stopped", "restart: 12", 1))
			}
			return data
		})()
		tree := mustRender(t, loadRepo(t), "dev", lazy)
		for _, op := range []struct {
			name string
			run  func() error
		}{
			{"plan", func() error { _, _, err := render.Plan(dir, tree); return err }},
			{"write", func() error { _, err := render.Write(dir, tree, render.WriteOptions{}); return err }},
			{"overwrite", func() error { _, err := render.Write(dir, tree, render.WriteOptions{Overwrite: true}); return err }},
		} {
			err := op.run()
			if err == nil || !strings.Contains(err.Error(), target) || !strings.Contains(err.Error(), "compose-go") {
				t.Errorf("%s of an invalid file: %v", op.name, err)
			}
		}
		sameSnapshot(t, "failed writes", before, snapshot(t, dir))
		assertNoTemp(t, dir)
	})
}
