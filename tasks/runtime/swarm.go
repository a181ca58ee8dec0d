package runtime

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/moby/moby/client"

	"github.com/maestro-platform/deploy/tasks/compose"
	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/maestro-platform/deploy/tasks/health"
	"github.com/maestro-platform/deploy/tasks/labels"
	"github.com/maestro-platform/deploy/tasks/render"
	"github.com/maestro-platform/deploy/tasks/ui"
)

// Swarm runs a release as a swarm stack, through `docker stack deploy` on
// the manager. Swarm itself replaces a changed service's tasks; with a
// proxy in front, published services are not port-published by their
// tasks, so their updates start the new task first and stop the old one
// once it is healthy.
type Swarm struct {
	// Engine is the manager's.
	Engine *engine.Engine
	// Env is the docker CLI's environment (compose.MinimalEnv, with
	// DOCKER_HOST): it runs isolated.
	Env []string
	// Proxy publishes the ports; nil when the tasks publish them.
	Proxy Traffic
}

// Name is "swarm".
func (s *Swarm) Name() string { return "swarm" }

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

// Plan compares the stack's services with the release by their config
// hash and image.
func (s *Swarm) Plan(ctx context.Context, rel *Release) (*Plan, error) {
	svcs, err := s.Engine.API.ServiceList(ctx, client.ServiceListOptions{
		Filters: client.Filters{}.Add("label", labels.StackNamespace+"="+rel.Project)})
	if err != nil {
		return nil, fmt.Errorf("list services of stack %s: %w", rel.Project, err)
	}
	type have struct{ id, hash, image string }
	byName := map[string]have{}
	for _, svc := range svcs.Items {
		h := have{id: svc.ID}
		if cs := svc.Spec.TaskTemplate.ContainerSpec; cs != nil {
			h.hash, h.image = cs.Labels[labels.ConfigHash], cs.Image
		}
		byName[strings.TrimPrefix(svc.Spec.Name, rel.Project+"_")] = h
	}
	p := &Plan{}
	for _, sv := range rel.Services {
		h, ok := byName[sv.Name]
		ch := Change{Service: sv.Name}
		switch {
		case !ok:
			ch.Action = Start
		case h.hash == sv.ConfigHash:
			ch.Action, ch.Old, ch.New = Keep, []string{h.id}, []string{h.id}
		case h.image != sv.Image:
			ch.Action, ch.Why, ch.Old = Replace, "image "+h.image+" -> "+sv.Image, []string{h.id}
		default:
			ch.Action, ch.Why, ch.Old = Replace, "configuration", []string{h.id}
		}
		p.Changes = append(p.Changes, ch)
	}
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		if _, ok := rel.service(name); !ok {
			p.Changes = append(p.Changes, Change{Service: name, Action: Drop, Why: "no longer in the catalog", Old: []string{byName[name].id}})
		}
	}
	return p, nil
}

// Apply deploys the stack file and waits until every service runs its
// replicas, healthy.
func (s *Swarm) Apply(ctx context.Context, rel *Release) (*Plan, error) {
	t0 := time.Now()
	p := rel.printer()
	pl, err := s.Plan(ctx, rel)
	if err != nil {
		return nil, err
	}
	if !pl.Changed() {
		pl.Took = time.Since(t0)
		return pl, s.ensureProxy(ctx, rel)
	}
	env, err := stackEnv(rel.Dir, s.Env)
	if err != nil {
		return pl, err
	}
	p.Line(ui.Run, "deploy", "docker stack deploy %s on %s: %s", rel.Project, s.Engine.Host, pl.Summary())
	w := rel.output()
	_, err = compose.ExecIsolatedStream(ctx, rel.Dir, env, StackDeployArgs(rel.Project, render.StackFile), w)
	w.Close()
	if err = rel.redactError(err); err != nil {
		return pl, fmt.Errorf("docker stack deploy on %s: %w", s.Engine.Host, err)
	}
	targets := make([]health.Target, 0, len(rel.Services))
	for _, sv := range rel.Services {
		targets = append(targets, health.Target{Service: sv.Name})
	}
	if _, err = health.Wait(ctx, &health.Swarm{Engine: s.Engine, Stack: rel.Project}, targets,
		health.Options{Deadline: rel.Env.HealthDeadline(), Printer: rel.Printer, Redact: rel.Redact, Quiet: true, Poll: 500 * time.Millisecond}); err != nil {
		return pl, fmt.Errorf("stack %s: %w", rel.Project, err)
	}
	p.Line(ui.OK, "converge", "every service runs its replicas, healthy, after %s", ui.Seconds(time.Since(t0)))
	// The proxy joins the stack's network, which the first deploy creates.
	if err := s.ensureProxy(ctx, rel); err != nil {
		return pl, err
	}
	pl.Took = time.Since(t0)
	return pl, nil
}

// ensureProxy makes the proxy publish the release's ports; swarm's DNS
// gives it the healthy tasks of each service, so nothing is attached.
func (s *Swarm) ensureProxy(ctx context.Context, rel *Release) error {
	if s.Proxy == nil {
		return nil
	}
	var routes []Route
	for _, sv := range rel.Services {
		if sv.HostPort != 0 {
			routes = append(routes, Route{Service: sv.Name, ListenPort: sv.HostPort, TargetPort: sv.ContainerPort})
		}
	}
	return s.Proxy.Ensure(ctx, routes)
}

// secretVar is what a stack file may take from .env: the secret
// references render writes. Nothing else of a .env ever reaches the
// docker CLI's environment (DOCKER_HOST, PATH, LD_PRELOAD...).
var secretVar = regexp.MustCompile(`^SECRET__[A-Z0-9_]+__[A-Za-z_][A-Za-z0-9_]*$`)

// stackEnv is the CLI environment of a stack deploy: base, plus the
// secret values the stack file refers to as ${VAR} (docker stack reads no
// .env), never on a command line.
func stackEnv(dir string, base []string) ([]string, error) {
	env := slices.Clone(base)
	vars, err := dotenv.Read(filepath.Join(dir, render.EnvFile))
	if err != nil {
		if os.IsNotExist(err) {
			return env, nil
		}
		return nil, fmt.Errorf("read %s: %w", render.EnvFile, err)
	}
	for _, k := range slices.Sorted(maps.Keys(vars)) {
		if secretVar.MatchString(k) {
			env = append(env, k+"="+vars[k])
		}
	}
	return env, nil
}

// Remove removes the stack.
func (s *Swarm) Remove(ctx context.Context, rel *Release, _ bool) error {
	if _, err := compose.ExecIsolated(ctx, "", s.Env, StackRemoveArgs(rel.Project)); err != nil {
		return fmt.Errorf("docker stack rm %s on %s: %w", rel.Project, s.Engine.Host, err)
	}
	return nil
}
