package release

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/maestro-platform/deploy/tasks/labels"

	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/maestro-platform/deploy/tasks/check"
	"github.com/maestro-platform/deploy/tasks/compose"
	"github.com/maestro-platform/deploy/tasks/render"
	"github.com/maestro-platform/deploy/tasks/ui"
	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"
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
	deadline := t.env.HealthDeadline()
	t0 := time.Now()
	dctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	reported := map[string]bool{}
	var last []string
	for {
		done, problems, fatal, err := t.stackState(dctx, reported, t0)
		if err != nil && dctx.Err() == nil {
			return err
		}
		if fatal != "" {
			return fmt.Errorf("stack %s: %s", t.cat.Project.Name, fatal)
		}
		if done && err == nil {
			t.p.Line(ui.OK, "converge", "every service runs its replicas, healthy, after %s", ui.Seconds(time.Since(t0)))
			return nil
		}
		if problems != nil {
			last = problems
		}
		select {
		case <-dctx.Done():
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("stack %s did not converge within %s:\n    %s", t.cat.Project.Name, deadline, strings.Join(last, "\n    "))
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (t *target) stackState(ctx context.Context, reported map[string]bool, t0 time.Time) (done bool, problems []string, fatal string, err error) {
	api := t.eng.API
	project := t.cat.Project.Name
	svcs, err := api.ServiceList(ctx, client.ServiceListOptions{Filters: client.Filters{}.Add("label", labels.StackNamespace+"="+project)})
	if err != nil {
		return false, nil, "", fmt.Errorf("list services of stack %s: %w", project, err)
	}
	byName := map[string]swarm.Service{}
	for _, s := range svcs.Items {
		byName[s.Spec.Name] = s
	}
	done = true
	for _, cs := range t.cat.All() {
		name := project + "_" + cs.Name
		s, ok := byName[name]
		if !ok {
			done = false
			problems = append(problems, name+": no such service yet")
			continue
		}
		if u := s.UpdateStatus; u != nil {
			switch u.State {
			case swarm.UpdateStateRollbackStarted, swarm.UpdateStateRollbackCompleted, swarm.UpdateStateRollbackPaused, swarm.UpdateStatePaused:
				return false, nil, fmt.Sprintf("%s: update %s: %s", name, u.State, u.Message), nil
			}
		}
		want := uint64(1)
		if r := s.Spec.Mode.Replicated; r != nil && r.Replicas != nil {
			want = *r.Replicas
		}
		tasks, err := api.TaskList(ctx, client.TaskListOptions{Filters: client.Filters{}.Add("service", s.ID)})
		if err != nil {
			return false, nil, "", fmt.Errorf("tasks of %s: %w", name, err)
		}
		image := ""
		if cspec := s.Spec.TaskTemplate.ContainerSpec; cspec != nil {
			image = cspec.Image
		}
		var running uint64
		var states, errs []string
		sort.Slice(tasks.Items, func(i, j int) bool { return tasks.Items[i].Status.Timestamp.After(tasks.Items[j].Status.Timestamp) })
		for _, tk := range tasks.Items {
			if tk.DesiredState != swarm.TaskStateRunning {
				if tk.Status.Err != "" && len(errs) < 2 {
					errs = append(errs, tk.Status.Err)
				}
				continue
			}
			if tk.Spec.ContainerSpec != nil && image != "" && tk.Spec.ContainerSpec.Image != image {
				continue
			}
			switch {
			case tk.Status.State == swarm.TaskStateRunning:
				running++
			case tk.Status.Err != "":
				// Why a task waits, e.g. "no suitable node (host-mode port
				// already in use on 1 node)".
				states = append(states, string(tk.Status.State)+": "+tk.Status.Err)
			default:
				states = append(states, string(tk.Status.State))
			}
		}
		if running >= want && len(states) == 0 && (s.UpdateStatus == nil || s.UpdateStatus.State != swarm.UpdateStateUpdating) {
			if !reported[name] {
				reported[name] = true
				t.p.Line(ui.OK, cs.Name, "%d/%d running and healthy after %s", running, want, ui.Seconds(time.Since(t0)))
			}
			continue
		}
		done = false
		msg := fmt.Sprintf("%s: %d/%d running", name, running, want)
		if len(states) > 0 {
			msg += " (others " + strings.Join(states, ", ") + ")"
		}
		if len(errs) > 0 {
			msg += "; failed tasks: " + strings.Join(errs, "; ")
		}
		problems = append(problems, msg)
	}
	return done, problems, "", nil
}
