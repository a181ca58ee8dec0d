package health

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"

	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/maestro-platform/deploy/tasks/labels"
	"github.com/maestro-platform/deploy/tasks/ui"
)

// Compose observes the containers of a compose project: those of each
// service (testAll's probe and `compose run` one-offs left out), running
// or not, so that a crashed one is seen as such.
type Compose struct {
	Engine  *engine.Engine
	Project string
	// Only, when set for a service, restricts it to these container IDs:
	// the new container of a service being replaced, while the old one
	// still runs beside it.
	Only map[string][]string

	// probes are the runner's own runs of each starting container's
	// healthcheck, by container ID (probe.go).
	probes prober
}

// Where names the engine.
func (c *Compose) Where() string { return c.Engine.Host }

// Observe inspects every container of the project.
func (c *Compose) Observe(ctx context.Context) (map[string]Observation, error) {
	cs, err := c.Engine.Containers(ctx, c.Project)
	if err != nil {
		return nil, err
	}
	out := map[string]Observation{}
	var mine []engine.Container
	for _, ct := range cs {
		if ct.Labels[labels.Probe] != "" || strings.EqualFold(ct.Labels[labels.ComposeOneOff], "true") {
			continue
		}
		if only, ok := c.Only[ct.Service]; ok && !contains(only, ct.ID) {
			continue
		}
		mine = append(mine, ct)
	}
	c.probes.settle(ctx, c.Engine, mine)
	for _, ct := range mine {
		o := out[ct.Service]
		o.Units = append(o.Units, ContainerUnit(ct))
		out[ct.Service] = o
	}
	return out, nil
}

func contains(ids []string, id string) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// ContainerUnit judges one container's state: exited, dead or restarting
// containers and unhealthy ones are fatal.
func ContainerUnit(c engine.Container) Unit {
	u := Unit{ID: c.ID, State: c.State, Health: c.Health, HealthOutput: c.HealthOutput,
		ImageID: c.ImageID, ConfigHash: c.Labels[labels.ConfigHash], Image: c.Image}
	switch c.State {
	case string(container.StateExited), string(container.StateDead):
		u.Fatal = fmt.Sprintf("%s (exit code %d)", c.State, c.ExitCode)
		u.Completed = c.State == string(container.StateExited) && c.ExitCode == 0
	case string(container.StateRestarting):
		u.Fatal = fmt.Sprintf("restarting (last exit code %d, restarted %d times)", c.ExitCode, c.RestartCount)
	case string(container.StateRunning):
		u.Running, u.Since = true, c.StartedAt
		switch c.Health {
		case string(container.Unhealthy):
			u.Fatal = "unhealthy"
			if c.HealthOutput != "" {
				u.Fatal += " (healthcheck: " + ui.Shorten(strings.Join(strings.Fields(ui.Clean(c.HealthOutput)), " "), 200) + ")"
			}
		case string(container.Starting):
			u.State = "health starting"
		case string(container.Healthy):
			u.State = "healthy"
		}
	}
	return u
}

// Logs writes a container's last lines.
func (c *Compose) Logs(ctx context.Context, id string, n int, w io.Writer) error {
	return c.Engine.Logs(ctx, id, engine.LogOptions{Tail: n}, w)
}

// Swarm observes the services of a swarm stack through the manager: the
// tasks of each service's current spec that swarm wants running. Swarm
// counts a task with a healthcheck as running only once it is healthy, so
// task states are enough, and they are known for every node.
type Swarm struct {
	Engine *engine.Engine
	// Stack is the stack (project) name; services are <stack>_<service>.
	Stack string
	// nodes names the swarm's nodes by ID, as far as they were looked up.
	nodes map[string]string
}

// nodeName is the hostname of the node of that ID (the ID itself when the
// manager does not know it); nodes are listed once, and again when a new
// one shows up.
func (s *Swarm) nodeName(ctx context.Context, id string) string {
	if id == "" {
		return ""
	}
	if _, ok := s.nodes[id]; !ok {
		if list, err := s.Engine.API.NodeList(ctx, client.NodeListOptions{}); err == nil {
			s.nodes = map[string]string{}
			for _, n := range list.Items {
				s.nodes[n.ID] = ui.Clean(n.Description.Hostname)
			}
		}
	}
	if name := s.nodes[id]; name != "" {
		return name
	}
	return engine.ShortID(id)
}

// Where names the manager.
func (s *Swarm) Where() string { return s.Engine.Host }

// Observe lists the stack's services and their tasks.
func (s *Swarm) Observe(ctx context.Context) (map[string]Observation, error) {
	api := s.Engine.API
	svcs, err := api.ServiceList(ctx, client.ServiceListOptions{Filters: client.Filters{}.Add("label", labels.StackNamespace+"="+s.Stack)})
	if err != nil {
		return nil, fmt.Errorf("list services of stack %s: %w", s.Stack, err)
	}
	out := map[string]Observation{}
	for _, svc := range svcs.Items {
		tasks, err := api.TaskList(ctx, client.TaskListOptions{Filters: client.Filters{}.Add("service", svc.ID)})
		if err != nil {
			return nil, fmt.Errorf("tasks of %s: %w", svc.Spec.Name, err)
		}
		out[strings.TrimPrefix(svc.Spec.Name, catalog.Scoped(s.Stack, ""))] = s.observe(ctx, svc, tasks.Items)
	}
	return out, nil
}

// observe judges one service from its tasks: only the tasks of its current
// spec count.
func (s *Swarm) observe(ctx context.Context, svc swarm.Service, items []swarm.Task) Observation {
	o := Observation{Want: 1}
	if r := svc.Spec.Mode.Replicated; r != nil && r.Replicas != nil {
		o.Want = int(*r.Replicas)
	}
	if u := svc.UpdateStatus; u != nil {
		switch u.State {
		case swarm.UpdateStateRollbackStarted, swarm.UpdateStateRollbackCompleted, swarm.UpdateStateRollbackPaused, swarm.UpdateStatePaused:
			o.Fatal = fmt.Sprintf("update %s: %s", u.State, u.Message)
		case swarm.UpdateStateUpdating:
			o.Problem = "update in progress"
		}
	}
	image, hash := "", ""
	if cs := svc.Spec.TaskTemplate.ContainerSpec; cs != nil {
		image, hash = cs.Image, cs.Labels[labels.ConfigHash]
	}
	sort.Slice(items, func(i, j int) bool { return items[i].Status.Timestamp.After(items[j].Status.Timestamp) })
	var failures []string
	for _, tk := range items {
		if tk.DesiredState != swarm.TaskStateRunning {
			if tk.Status.Err != "" && len(failures) < 2 {
				failures = append(failures, tk.Status.Err)
			}
			continue
		}
		// A task of the spec being replaced: right after a deploy the
		// orchestrator may not have started the update yet, and the
		// old task, running and healthy, must not answer for the new
		// spec. The config hash tells an env-only change apart.
		if cs := tk.Spec.ContainerSpec; cs != nil && (image != "" && cs.Image != image || cs.Labels[labels.ConfigHash] != hash) {
			continue
		}
		u := Unit{ID: tk.ID, State: string(tk.Status.State), Node: s.nodeName(ctx, tk.NodeID)}
		if tk.Status.ContainerStatus != nil && tk.Status.ContainerStatus.ContainerID != "" {
			u.ID = tk.Status.ContainerStatus.ContainerID
		}
		if cs := tk.Spec.ContainerSpec; cs != nil {
			u.Image, _, _ = strings.Cut(ui.Clean(cs.Image), "@")
			u.ConfigHash = cs.Labels[labels.ConfigHash]
		}
		switch tk.Status.State {
		case swarm.TaskStateRunning:
			u.Running, u.Since = true, tk.Status.Timestamp
		default:
			if tk.Status.Err != "" {
				u.State += ": " + tk.Status.Err
			}
		}
		o.Units = append(o.Units, u)
	}
	return withFailures(o, failures)
}

// Logs writes a task container's last lines, when the container is on the
// manager; a task on another node has no log here.
func (s *Swarm) Logs(ctx context.Context, id string, n int, w io.Writer) error {
	return s.Engine.Logs(ctx, id, engine.LogOptions{Tail: n}, w)
}

// withFailures adds the errors of a service's finished tasks to its
// problem while fewer of its tasks run than it wants, to say why. Once
// they all run they are history, not a problem: a task stopped on a
// drained or lost node often ends with a cleanup error ("error while
// removing network"), which must not keep a healthy service unhealthy.
func withFailures(o Observation, failures []string) Observation {
	running := 0
	for _, u := range o.Units {
		if u.Running {
			running++
		}
	}
	if len(failures) == 0 || running >= max(o.Want, 1) {
		return o
	}
	msg := "failed tasks: " + strings.Join(failures, "; ")
	if o.Problem != "" {
		msg = o.Problem + "; " + msg
	}
	o.Problem = msg
	return o
}
