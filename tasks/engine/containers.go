package engine

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/maestro-platform/deploy/tasks/labels"
	"github.com/maestro-platform/deploy/tasks/ui"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// PortBinding is a container port published on the host.
type PortBinding struct {
	HostIP        string // "" or "0.0.0.0" for all addresses
	HostPort      int    // 0 when not published
	ContainerPort int
	Proto         string // "tcp" or "udp"
}

// Container is one container of a compose project.
type Container struct {
	ID, Service, Project string
	// State is the engine's state: "running", "exited", "restarting",
	// "created", "paused", "dead".
	State string
	// Health is "healthy", "unhealthy", "starting", or "" without a
	// healthcheck; HealthOutput is the last healthcheck's output (or its
	// exit code when it printed nothing).
	Health, HealthOutput string
	// Image is the reference the container was created from, ImageID
	// what it resolved to.
	Image, ImageID string
	Ports          []PortBinding
	// ExitCode is meaningful once State is "exited"; RestartCount counts
	// the engine's restarts of it.
	ExitCode, RestartCount int
	// Name is the container's name, without the leading "/".
	Name               string
	Created, StartedAt time.Time
	Labels             map[string]string
	// HealthTest is the container's own healthcheck (["CMD", args...] or
	// ["CMD-SHELL", command]), nil without one; HealthTimeout bounds one
	// run of it (0: the engine's default).
	HealthTest    []string
	HealthTimeout time.Duration
}

// Containers returns every container (running or not) of the compose
// project, sorted by service.
func (e *Engine) Containers(ctx context.Context, project string) ([]Container, error) {
	return e.ContainersLabeled(ctx, labels.ComposeProject, project)
}

// ContainersLabeled returns every container (running or not) whose label
// key has value, sorted by service.
func (e *Engine) ContainersLabeled(ctx context.Context, key, value string) ([]Container, error) {
	list, err := e.API.ContainerList(ctx, client.ContainerListOptions{All: true,
		Filters: client.Filters{}.Add("label", key+"="+value)})
	if err != nil {
		return nil, fmt.Errorf("list containers of %s on %s: %w", value, e.Host, err)
	}
	out := make([]Container, 0, len(list.Items))
	for _, s := range list.Items {
		// Labels and health output are the host's words: cleaned here,
		// once, as they are printed in plans, tables and errors.
		c := Container{ID: s.ID, Project: s.Labels[labels.ComposeProject], Service: ui.Clean(s.Labels[labels.ComposeService]),
			State: string(s.State), Image: s.Image, ImageID: s.ImageID, Labels: s.Labels,
			Created: time.Unix(s.Created, 0)}
		for _, p := range s.Ports {
			b := PortBinding{HostPort: int(p.PublicPort), ContainerPort: int(p.PrivatePort), Proto: string(p.Type)}
			if p.IP.IsValid() {
				b.HostIP = p.IP.String()
			}
			c.Ports = append(c.Ports, b)
		}
		// The list has no health before API 1.52 and no start time at all.
		in, err := e.API.ContainerInspect(ctx, s.ID, client.ContainerInspectOptions{})
		if err != nil {
			if IsNotFound(err) {
				continue // removed since the list
			}
			return nil, fmt.Errorf("inspect container %s (%s): %w", ShortID(s.ID), c.Service, err)
		}
		c.Name = ui.Clean(strings.TrimPrefix(in.Container.Name, "/"))
		c.RestartCount = in.Container.RestartCount
		if cfg := in.Container.Config; cfg != nil && cfg.Healthcheck != nil {
			c.HealthTest, c.HealthTimeout = cfg.Healthcheck.Test, cfg.Healthcheck.Timeout
		}
		if st := in.Container.State; st != nil {
			c.State = string(st.Status)
			c.ExitCode = st.ExitCode
			c.StartedAt, _ = time.Parse(time.RFC3339Nano, st.StartedAt)
			if h := st.Health; h != nil {
				c.Health = string(h.Status)
				if n := len(h.Log); n > 0 && h.Log[n-1] != nil {
					c.HealthOutput = strings.TrimSpace(ui.Clean(h.Log[n-1].Output))
					if c.HealthOutput == "" && h.Log[n-1].ExitCode != 0 {
						c.HealthOutput = fmt.Sprintf("exit code %d", h.Log[n-1].ExitCode)
					}
				}
			}
		}
		out = append(out, c)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Service != out[j].Service {
			return out[i].Service < out[j].Service
		}
		return out[i].Created.Before(out[j].Created)
	})
	return out, nil
}

// LogOptions say which of a container's output Logs writes.
type LogOptions struct {
	// Tail is how many of the last lines (<= 0: all of them).
	Tail int
	// Since, when set, leaves out what was printed before: a duration
	// ("10m") or a time, as docker logs reads it.
	Since string
	// Follow goes on writing what it prints until ctx ends or it stops.
	Follow bool
}

func (o LogOptions) tail() string {
	if o.Tail > 0 {
		return strconv.Itoa(o.Tail)
	}
	return "all"
}

// Logs writes the container's output to w as o says. stdout and stderr
// are merged.
func (e *Engine) Logs(ctx context.Context, containerID string, o LogOptions, w io.Writer) error {
	in, err := e.API.ContainerInspect(ctx, containerID, client.ContainerInspectOptions{})
	if err != nil {
		return fmt.Errorf("logs of %s: %w", ShortID(containerID), err)
	}
	rc, err := e.API.ContainerLogs(ctx, containerID, client.ContainerLogsOptions{
		ShowStdout: true, ShowStderr: true, Tail: o.tail(), Since: o.Since, Follow: o.Follow})
	if err != nil {
		return fmt.Errorf("logs of %s: %w", ShortID(containerID), err)
	}
	defer rc.Close()
	if in.Container.Config != nil && in.Container.Config.Tty {
		_, err = io.Copy(w, rc) // a TTY's output is not multiplexed
	} else {
		_, err = stdcopy.StdCopy(w, w, rc)
	}
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("logs of %s: %w", ShortID(containerID), err)
	}
	return nil
}

// ServiceLogs writes the output of a swarm service's tasks, on every node,
// to w as o says (through the manager).
func (e *Engine) ServiceLogs(ctx context.Context, service string, o LogOptions, w io.Writer) error {
	rc, err := e.API.ServiceLogs(ctx, service, client.ServiceLogsOptions{
		ShowStdout: true, ShowStderr: true, Tail: o.tail(), Since: o.Since, Follow: o.Follow})
	if err != nil {
		return fmt.Errorf("logs of service %s: %w", ui.Clean(service), err)
	}
	defer rc.Close()
	if _, err = stdcopy.StdCopy(w, w, rc); err != nil && ctx.Err() == nil {
		return fmt.Errorf("logs of service %s: %w", ui.Clean(service), err)
	}
	return nil
}

// defaultProbeTimeout is the engine's bound of one healthcheck run when
// the container sets none.
const defaultProbeTimeout = 30 * time.Second

// RunHealthcheck runs the container's own healthcheck once, now, as the
// engine would (CMD: the arguments; CMD-SHELL: through /bin/sh -c), bounded
// by its timeout: the runner's probe while a container starts, so that it
// need not wait for the engine's first check, which comes only after the
// healthcheck's interval. ok is its exit status being 0; out is what it
// printed, cleaned (its exit code when it printed nothing). A container
// without a healthcheck has nothing to run: an error.
func (e *Engine) RunHealthcheck(ctx context.Context, c Container) (out string, ok bool, err error) {
	if len(c.HealthTest) < 2 {
		return "", false, fmt.Errorf("container %s has no healthcheck to run", ShortID(c.ID))
	}
	var cmd []string
	switch c.HealthTest[0] {
	case "CMD":
		cmd = c.HealthTest[1:]
	case "CMD-SHELL":
		cmd = []string{"/bin/sh", "-c", c.HealthTest[1]}
	default:
		return "", false, fmt.Errorf("container %s: healthcheck %q cannot be run", ShortID(c.ID), c.HealthTest[0])
	}
	timeout := c.HealthTimeout
	if timeout <= 0 {
		timeout = defaultProbeTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	printed, code, err := e.Exec(ctx, c.ID, cmd, 4<<10)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Sprintf("healthcheck exceeded its timeout (%s)", timeout), false, nil
		}
		return "", false, err
	}
	out = strings.TrimSpace(ui.Clean(printed))
	if out == "" && code != 0 {
		out = fmt.Sprintf("exit code %d", code)
	}
	return out, code == 0, nil
}

// Exec runs cmd in the running container id and returns what it printed
// on both streams (at most max bytes kept) and its exit code; ctx bounds
// the wait for it.
func (e *Engine) Exec(ctx context.Context, id string, cmd []string, max int64) (string, int, error) {
	var b bytes.Buffer
	code, err := ExecTo(ctx, e.API, id, cmd, max, &b, &b)
	return b.String(), code, err
}

// ExecTo runs cmd in the running container id, copies its standard output
// and error to stdout and stderr (at most max bytes in all) and returns
// its exit code (-1 with an error). ctx bounds the wait for it: the attach
// stream does not see ctx, so it is closed when ctx ends.
func ExecTo(ctx context.Context, api *client.Client, id string, cmd []string, max int64, stdout, stderr io.Writer) (int, error) {
	ex, err := api.ExecCreate(ctx, id, client.ExecCreateOptions{Cmd: cmd, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return -1, fmt.Errorf("exec in %s: %w", ShortID(id), err)
	}
	att, err := api.ExecAttach(ctx, ex.ID, client.ExecAttachOptions{})
	if err != nil {
		return -1, fmt.Errorf("exec in %s: %w", ShortID(id), err)
	}
	defer att.Close()
	stop := context.AfterFunc(ctx, func() { att.Close() })
	defer stop()
	_, err = stdcopy.StdCopy(stdout, stderr, io.LimitReader(att.Reader, max))
	if ctx.Err() != nil {
		return -1, ctx.Err()
	}
	if err != nil {
		return -1, fmt.Errorf("exec in %s: %w", ShortID(id), err)
	}
	st, err := api.ExecInspect(ctx, ex.ID, client.ExecInspectOptions{})
	if err != nil {
		return -1, fmt.Errorf("exec in %s: %w", ShortID(id), err)
	}
	return st.ExitCode, nil
}

// ShortID is an image, container or node ID as docker prints it: 12 hex digits,
// without the "sha256:" prefix. IDs come from hosts and are printed, so
// it is cleaned too.
func ShortID(id string) string {
	id = ui.Clean(strings.TrimPrefix(id, "sha256:"))
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// Exit is how a container that ran to its end ended: its exit status and
// what it printed on each stream.
type Exit struct {
	Status         int64
	Stdout, Stderr []byte
}

// RunToExit starts the created container id, waits until it exits (ctx
// bounds the wait) and reads what it printed. Removing it is the caller's:
// it created it.
func RunToExit(ctx context.Context, api *client.Client, id string) (*Exit, error) {
	wait := api.ContainerWait(ctx, id, client.ContainerWaitOptions{Condition: container.WaitConditionNextExit})
	if _, err := api.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		return nil, fmt.Errorf("start: %w", err)
	}
	x := &Exit{}
	select {
	case r := <-wait.Result:
		x.Status = r.StatusCode
	case err := <-wait.Error:
		return nil, fmt.Errorf("wait: %w", err)
	}
	rc, err := api.ContainerLogs(ctx, id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return nil, fmt.Errorf("logs: %w", err)
	}
	defer rc.Close()
	var stdout, stderr bytes.Buffer
	if _, err := stdcopy.StdCopy(&stdout, &stderr, rc); err != nil {
		return nil, fmt.Errorf("logs: %w", err)
	}
	x.Stdout, x.Stderr = stdout.Bytes(), stderr.Bytes()
	return x, nil
}
