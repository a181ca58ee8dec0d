package runtime

import (
	"context"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"

	"github.com/maestro-platform/deploy/tasks/catalog"
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

// Ships all but the .env files: they hold the secrets' values, which on a
// swarm live only in Docker's secret store, and the stack is deployed from
// here (its file names no variable).
func (s *Swarm) Ships(name string) bool { return path.Base(name) != render.EnvFile }

// Logs writes what the service's tasks printed, on every node, through the
// manager.
func (s *Swarm) Logs(ctx context.Context, project, service string, o engine.LogOptions, line func(string)) error {
	lw := ui.Lines(line)
	defer lw.Close()
	return s.Engine.ServiceLogs(ctx, catalog.Scoped(project, service), o, lw)
}

// Describe lists the swarm's nodes as its manager sees them; a node that
// is down, or an engine that is no manager, is the error.
func (s *Swarm) Describe(ctx context.Context) (string, error) {
	info, err := s.Engine.API.Info(ctx, client.InfoOptions{})
	if err != nil {
		return "", fmt.Errorf("info of %s: %w", s.Engine.Host, err)
	}
	if !info.Info.Swarm.ControlAvailable {
		return "", fmt.Errorf("%s is no swarm manager (swarm state %q): `docker swarm init` there, or point host at a manager",
			s.Engine.Host, ui.Clean(string(info.Info.Swarm.LocalNodeState)))
	}
	list, err := s.Engine.API.NodeList(ctx, client.NodeListOptions{})
	if err != nil {
		return "", fmt.Errorf("nodes of the swarm of %s: %w", s.Engine.Host, err)
	}
	var nodes, down []string
	for _, n := range list.Items {
		d := fmt.Sprintf("%s (%s, %s, %s)", ui.Clean(n.Description.Hostname), ui.Clean(string(n.Spec.Role)),
			ui.Clean(string(n.Status.State)), ui.Clean(string(n.Spec.Availability)))
		nodes = append(nodes, d)
		if n.Status.State != swarm.NodeStateReady {
			down = append(down, d)
		}
	}
	if len(down) > 0 {
		return "", fmt.Errorf("swarm nodes not ready: %s (of %s)", strings.Join(down, ", "), strings.Join(nodes, ", "))
	}
	return fmt.Sprintf("swarm manager; %d node(s): %s", len(nodes), strings.Join(nodes, ", ")), nil
}

// Health observes the stack's tasks through the manager, on every node.
func (s *Swarm) Health(project string) health.Source {
	return &health.Swarm{Engine: s.Engine, Stack: project}
}

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
			h.hash, h.image = cs.Labels[labels.ConfigHash], ui.Clean(cs.Image)
		}
		// The host's names: a plan prints them.
		byName[ui.Clean(strings.TrimPrefix(svc.Spec.Name, catalog.Scoped(rel.Project, "")))] = h
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
			ch.Action, ch.Why, ch.Old = Replace, "configuration changed", []string{h.id}
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
	if err := s.ensureSecrets(ctx, rel); err != nil {
		return pl, err
	}
	p.Line(ui.Run, "deploy", "docker stack deploy %s on %s: %s", rel.Project, s.Engine.Host, pl.Summary())
	// Nothing of the release's .env reaches the CLI: the stack file names
	// no variable, its secrets are Docker secrets.
	w := rel.output()
	_, err = compose.ExecIsolatedStream(ctx, rel.Dir, s.Env, StackDeployArgs(rel.Project, render.StackFile), w)
	w.Close()
	if err = rel.redactError(err); err != nil {
		return pl, fmt.Errorf("docker stack deploy on %s: %w", s.Engine.Host, err)
	}
	targets := make([]health.Target, 0, len(rel.Services))
	for _, sv := range rel.Services {
		targets = append(targets, health.Target{Service: sv.Name})
	}
	if _, err = health.Wait(ctx, s.Health(rel.Project), targets,
		health.Options{Deadline: rel.Env.HealthDeadline(), Printer: rel.Printer, Redact: rel.Redact, Quiet: true, Poll: 500 * time.Millisecond}); err != nil {
		return pl, fmt.Errorf("stack %s: %w", rel.Project, err)
	}
	p.Line(ui.OK, "converge", "every service runs its replicas, healthy, after %s", ui.Seconds(time.Since(t0)))
	s.removeStaleSecrets(ctx, rel)
	// The proxy joins the stack's network, which the first deploy creates.
	if err := s.ensureProxy(ctx, rel); err != nil {
		return pl, err
	}
	pl.Took = time.Since(t0)
	return pl, nil
}

// ensureProxy makes the proxy publish the release's ports, on the stack's
// network: swarm's DNS gives it the healthy tasks of each service, so
// nothing is attached, and nothing is drained either: the engine takes a
// task out of the service's DNS 2 s before it stops it (its executor's
// gossip delay), four of the proxy's lookups.
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
	return s.Proxy.Ensure(ctx, routes, catalog.Scoped(rel.Project, rel.Cat.Project.Network))
}

// ensureSecrets creates the release's Docker secrets the swarm lacks. A
// secret's name changes with its value, so an existing one is the right
// one; each is labelled with the project, for removeStaleSecrets.
func (s *Swarm) ensureSecrets(ctx context.Context, rel *Release) error {
	have, err := s.Engine.API.SecretList(ctx, client.SecretListOptions{
		Filters: client.Filters{}.Add("label", labels.Project+"="+rel.Project)})
	if err != nil {
		return fmt.Errorf("list the secrets of %s: %w", rel.Project, err)
	}
	names := map[string]bool{}
	for _, sec := range have.Items {
		names[sec.Spec.Name] = true
	}
	for _, sec := range rel.Secrets {
		if names[sec.Name] {
			continue
		}
		spec := swarm.SecretSpec{Annotations: swarm.Annotations{Name: sec.Name,
			Labels: map[string]string{labels.Project: rel.Project}}, Data: sec.Value}
		if _, err := s.Engine.API.SecretCreate(ctx, client.SecretCreateOptions{Spec: spec}); err != nil && !strings.Contains(err.Error(), "already exists") {
			return fmt.Errorf("create secret %s on %s: %w", sec.Name, s.Engine.Host, err)
		}
	}
	return nil
}

// removeStaleSecrets removes the project's secrets the release no longer
// mounts (old values); one still in use by a task is left for next time.
func (s *Swarm) removeStaleSecrets(ctx context.Context, rel *Release) {
	have, err := s.Engine.API.SecretList(ctx, client.SecretListOptions{
		Filters: client.Filters{}.Add("label", labels.Project+"="+rel.Project)})
	if err != nil {
		return
	}
	keep := map[string]bool{}
	for _, sec := range rel.Secrets {
		keep[sec.Name] = true
	}
	for _, sec := range have.Items {
		if !keep[sec.Spec.Name] {
			_, _ = s.Engine.API.SecretRemove(ctx, sec.ID, client.SecretRemoveOptions{})
		}
	}
}

// Remove removes the stack.
func (s *Swarm) Remove(ctx context.Context, rel *Release, _ bool) error {
	if _, err := compose.ExecIsolated(ctx, "", s.Env, StackRemoveArgs(rel.Project)); err != nil {
		return fmt.Errorf("docker stack rm %s on %s: %w", rel.Project, s.Engine.Host, err)
	}
	// stack rm returns while the tasks stop and the networks go; a stack
	// deployed again meanwhile would find them half there.
	ctx, cancel := context.WithTimeout(ctx, stackGone)
	defer cancel()
	label := client.Filters{}.Add("label", labels.StackNamespace+"="+rel.Project)
	for {
		cs, cerr := s.Engine.API.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: label})
		ns, nerr := s.Engine.API.NetworkList(ctx, client.NetworkListOptions{Filters: label})
		if cerr == nil && nerr == nil && len(cs.Items) == 0 && len(ns.Items) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stack %s on %s: still there %s after docker stack rm (containers: %d, networks: %d)",
				rel.Project, s.Engine.Host, stackGone, len(cs.Items), len(ns.Items))
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// stackGone bounds the wait for a removed stack's tasks and networks.
const stackGone = 2 * time.Minute

// Nodes lists the swarm's nodes, once the engine is known to be a manager
// of an active swarm (the one that deploys and schedules); self is the
// manager's own node.
func (s *Swarm) Nodes(ctx context.Context) (self string, nodes []swarm.Node, err error) {
	info, err := s.Engine.API.Info(ctx, client.InfoOptions{})
	if err != nil {
		return "", nil, fmt.Errorf("swarm: %s: %w", s.Engine.Host, err)
	}
	sw := info.Info.Swarm
	if sw.LocalNodeState != swarm.LocalNodeStateActive || !sw.ControlAvailable {
		return "", nil, fmt.Errorf("%s is not a swarm manager (its swarm state is %q): run `docker swarm init` there, or set host to a manager of the swarm",
			s.Engine.Host, sw.LocalNodeState)
	}
	list, err := s.Engine.API.NodeList(ctx, client.NodeListOptions{})
	if err != nil {
		return "", nil, fmt.Errorf("swarm: nodes of %s: %w", s.Engine.Host, err)
	}
	return sw.NodeID, list.Items, nil
}
