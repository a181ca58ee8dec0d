package release

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/maestro-platform/deploy/tasks/check"
	"github.com/maestro-platform/deploy/tasks/compose"
	"github.com/maestro-platform/deploy/tasks/health"
	"github.com/maestro-platform/deploy/tasks/render"
	"github.com/maestro-platform/deploy/tasks/ui"
)

// StackDeployArgs is the docker command line that deploys a stack file:
// services no longer in the file are removed, and image references are
// used as they are (the host has no registry to resolve them against).
func StackDeployArgs(project, stackFile string) []string {
	return []string{"docker", "stack", "deploy", "--prune", "--resolve-image", "never", "-c", stackFile, project}
}

// StackRemoveArgs removes a stack.
func StackRemoveArgs(project string) []string {
	return []string{"docker", "stack", "rm", project}
}

func (t *target) startStack(ctx context.Context, dir string) (*check.Report, string, error) {
	ts := time.Now()
	t.p.Line(ui.Run, "deploy", "docker stack deploy %s on %s", t.cat.Project.Name, t.eng.Host)
	if err := t.deployStack(ctx, dir); err != nil {
		return nil, "deploy", err
	}
	t.p.Line(ui.OK, "deploy", "stack updated in %s", ui.Seconds(time.Since(ts)))
	if err := t.waitStack(ctx); err != nil {
		return nil, "converge", err
	}
	report, err := t.checks(ctx)
	if err != nil {
		return report, "checks", err
	}
	return report, "", nil
}

// deployStack runs docker stack deploy on the release's stack file. The
// stack file refers to the release's .env values (secrets among them) as
// ${VAR}: docker stack reads no .env, so they are given to it in its
// environment, never on its command line.
func (t *target) deployStack(ctx context.Context, dir string) error {
	stack := filepath.Join(dir, render.StackFile)
	if _, err := os.Stat(stack); err != nil {
		return errNoStack
	}
	env := append([]string(nil), t.dockerEnv...)
	if vars, err := dotenv.Read(filepath.Join(dir, render.EnvFile)); err == nil {
		for _, k := range slices.Sorted(maps.Keys(vars)) {
			env = append(env, k+"="+vars[k])
		}
	} else if !os.IsNotExist(err) {
		return fmt.Errorf("read %s: %w", render.EnvFile, err)
	}
	return runDocker(ctx, dir, env, StackDeployArgs(t.cat.Project.Name, render.StackFile))
}

func (t *target) removeStack(ctx context.Context) error {
	return runDocker(ctx, "", t.dockerEnv, StackRemoveArgs(t.cat.Project.Name))
}

func runDocker(ctx context.Context, dir string, env, argv []string) error {
	_, err := compose.Exec(ctx, dir, env, argv)
	return err
}

// waitStack waits until every service of the stack runs as many tasks of
// its current spec as it declares; a task with a healthcheck counts only
// once healthy (swarm holds it in "starting" until then). An update that
// swarm rolled back or paused fails at once.
func (t *target) waitStack(ctx context.Context) error {
	targets := make([]health.Target, 0, len(t.cat.All()))
	for _, s := range t.cat.All() {
		targets = append(targets, health.Target{Service: s.Name})
	}
	t0 := time.Now()
	_, err := health.Wait(ctx, &health.Swarm{Engine: t.eng, Stack: t.cat.Project.Name}, targets,
		health.Options{Deadline: t.env.HealthDeadline(), Printer: t.p, Redact: check.Redactor(t.cat), Quiet: true, Poll: 500 * time.Millisecond})
	if err != nil {
		return fmt.Errorf("stack %s: %w", t.cat.Project.Name, err)
	}
	t.p.Line(ui.OK, "converge", "every service runs its replicas, healthy, after %s", ui.Seconds(time.Since(t0)))
	return nil
}
