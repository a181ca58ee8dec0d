package release

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/maestro-platform/deploy/internal/testenv"
	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/maestro-platform/deploy/tasks/labels"
	"github.com/maestro-platform/deploy/tasks/runtime"
	"github.com/maestro-platform/deploy/tasks/ui"
)

// A first release that fails is taken down by what it started, never by
// project (compose down would also remove what the host ran of the project
// before, by hand say): a container of the project the release did not
// start survives, as does one it replaced.
func TestTakeDownRemovesOnlyWhatTheReleaseStarted(t *testing.T) {
	testenv.RequireDocker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	eng, err := engine.Connect(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	project := testenv.ProjectName(t, "down")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\nLABEL maestro-takedown-test=1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	img := project + "/img:1"
	docker := func(args ...string) string {
		t.Helper()
		out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("docker %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	docker("build", "-q", "-t", img, dir)
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", "-f", img).Run() })
	create := func(name, service string) string {
		id := docker("create", "--name", project+"-"+name, "--label", labels.ComposeProject+"="+project,
			"--label", labels.ComposeService+"="+service, img, "/x")
		t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", id).Run() })
		return id
	}
	byHand := create("byhand", "legacy")
	replacedOld := create("old", "web")
	replacedNew := create("new", "web")
	started := create("started", "api")

	tg := &target{eng: eng, p: ui.Plain(io.Discard)}
	plan := &runtime.Plan{Changes: []runtime.Change{
		{Service: "web", Action: runtime.Replace, Old: []string{replacedOld}, New: []string{replacedNew}},
		{Service: "api", Action: runtime.Start, New: []string{started}},
	}}
	if err := tg.takeDown(ctx, plan); err != nil {
		t.Fatalf("takeDown: %v", err)
	}
	exists := func(id string) bool { return exec.CommandContext(ctx, "docker", "inspect", id).Run() == nil }
	if exists(started) {
		t.Error("the container the failed release started is still there")
	}
	for name, id := range map[string]string{"run by hand": byHand, "replaced (old)": replacedOld} {
		if !exists(id) {
			t.Errorf("the container %s was removed: only what the release started may go", name)
		}
	}
}
