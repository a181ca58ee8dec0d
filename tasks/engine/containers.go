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
