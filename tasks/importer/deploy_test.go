package importer_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/maestro-platform/deploy/internal/testenv"
	"github.com/maestro-platform/deploy/tasks/importer"
	"github.com/maestro-platform/deploy/tasks/stack"
	"github.com/maestro-platform/deploy/tasks/ui"
)

// TestImportedSampleDeploys: the sample platform's repositories, their
// compose files imported into an empty catalog, deploy as today's
// services.toml does: every service built, started, healthy, and every
// check of testAll green, the services reaching each other.
func TestImportedSampleDeploys(t *testing.T) {
	testenv.RequireDocker(t)
	testenv.RequireCommand(t, "docker-compose")
	ctx, cancel := testenv.Context(t)
	defer cancel()
	p := testenv.SamplePlatform(t, "imp", testenv.WithRepoFiles())
	empty := "[project]\nname = \"maestro\"\ndeploy_dir = \"~/deployment\"\n"
	if err := os.WriteFile(p.Catalog, []byte(empty), 0o644); err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, r := range []string{"infrastructure/state-store", "services/template-service", "services/automation-service",
		"services/k8s-execution-service", "quality-fabric", "maestro-engine"} {
		paths = append(paths, filepath.Join(p.Root, "examples", "maestro-platform", r))
	}
	var out bytes.Buffer
	res, err := importer.Import(ctx, importer.Options{Catalog: p.Catalog, Paths: paths, Prebuild: true, Out: &out})
	if err != nil {
		t.Fatalf("import: %v\n%s", err, out.String())
	}
	if len(res.Added) != 6 || len(res.Losses) != 0 {
		t.Fatalf("import: %+v", res)
	}
	imported, err := os.ReadFile(p.Catalog)
	if err != nil {
		t.Fatal(err)
	}
	p.UseCatalog(t, string(imported)) // this test's project name and free dev ports
	// The gateway's token is a secret: its value comes from outside the
	// catalog, here the dev environment's secrets file.
	secrets := filepath.Join(p.Root, ".maestro", "secrets", "dev.env")
	if err := os.MkdirAll(filepath.Dir(secrets), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secrets, []byte("GATEWAY_API_TOKEN=imported-dev-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	var log bytes.Buffer
	s, err := stack.Open(stack.Config{Catalog: p.Catalog, Out: ui.Plain(&log)})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		_ = s.Down(ctx, true)
		refs, _ := exec.CommandContext(ctx, "docker", "images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", "reference="+p.Project+"/*").Output()
		for _, ref := range strings.Fields(string(refs)) {
			_ = exec.CommandContext(ctx, "docker", "rmi", "-f", ref).Run()
		}
	})
	for _, step := range []struct {
		name string
		fn   func(context.Context) error
	}{{"render", s.Render}, {"build", s.Build}, {"up", s.Up}, {"testAll", s.TestAll}, {"summary", s.Summary}} {
		if err := step.fn(ctx); err != nil {
			t.Fatalf("%s: %v\n%s", step.name, err, log.String())
		}
	}
	report, err := os.ReadFile(filepath.Join(p.Deploy, "reports", "testall.json"))
	if err != nil {
		t.Fatal(err)
	}
	// 6 containers, 5 health checks, 6 network checks: as services.toml.
	for _, want := range []string{`"ok": true`, `"failed": 0`, `"total": 17`} {
		if !bytes.Contains(report, []byte(want)) {
			t.Errorf("testall.json lacks %s:\n%s", want, report)
		}
	}
	if t.Failed() {
		t.Logf("%s", log.String())
	}
}
