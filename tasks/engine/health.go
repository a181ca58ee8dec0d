package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	neturl "net/url"
	"strconv"
	"strings"
	"time"

	"github.com/maestro-platform/deploy/tasks/labels"

	"github.com/maestro-platform/deploy/tasks/ui"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// pollInterval is how often WaitHealthy looks at containers again.
const pollInterval = 250 * time.Millisecond

// LogTail is how many log lines WaitHealthy's error carries per failing
// service.
const LogTail = 50

// WaitTarget is a service WaitHealthy waits for.
type WaitTarget struct {
	Service string
	// HealthPath is the HTTP path probed on HostPort when the container has
	// no healthcheck of its own (default "/").
	HealthPath string
	// HostPort is the service's published port; 0 = not published.
	HostPort int
	// HasHealthcheck says the compose file gives the service a healthcheck;
	// the container's own health is then waited for.
	HasHealthcheck bool
}

// WaitResult is how a service ended up.
type WaitResult struct {
	Service, ContainerID string
	// State is the container's state when the wait ended, with detail
	// ("running", "exited (code 1)", "unhealthy", "starting", "no container").
	State   string
	Healthy bool
	// After is the time from the start of the wait to healthy (or failure).
	After time.Duration
}

// WaitHealthy waits until every target's containers in the compose project
// are healthy: the container's health when it has a healthcheck, else an
// HTTP GET of http://httpHost:HostPort/HealthPath answering 2xx, else just
// running. It prints a line per service as it becomes healthy. A container
// that exited, is restarting or is unhealthy fails at once; otherwise the
// wait ends at deadline, which must be positive. The error names each failing service, its state
// and the last LogTail lines of its log.
func (e *Engine) WaitHealthy(ctx context.Context, project, httpHost string, targets []WaitTarget, deadline time.Duration, p *ui.Printer) ([]WaitResult, error) {
	if p == nil {
		p = ui.Plain(io.Discard)
	}
	if httpHost == "" {
		httpHost = "127.0.0.1"
	}
	if deadline <= 0 {
		return nil, fmt.Errorf("wait healthy: no deadline given")
	}
	t0 := time.Now()
	dctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}

	results := make([]WaitResult, len(targets))
	done := make([]bool, len(targets))
	var failed []int
	for i, t := range targets {
		results[i] = WaitResult{Service: t.Service, State: "no container"}
		p.Line(ui.Run, t.Service, "waiting for %s", how(t, httpHost))
	}
	for {
		list, err := e.API.ContainerList(dctx, client.ContainerListOptions{All: true,
			Filters: client.Filters{}.Add("label", labels.ComposeProject+"="+project)})
		if err != nil && dctx.Err() == nil {
			return results, fmt.Errorf("wait healthy: list containers of %s on %s: %w", project, e.Host, err)
		}
		byService := map[string][]string{}
		for _, c := range list.Items {
			byService[c.Labels[labels.ComposeService]] = append(byService[c.Labels[labels.ComposeService]], c.ID)
		}
		pending := 0
		for i, t := range targets {
			if done[i] || dctx.Err() != nil {
				continue
			}
			st := e.probe(dctx, hc, httpHost, t, byService[t.Service])
			results[i].State, results[i].ContainerID = st.state, st.id
			results[i].After = time.Since(t0)
			switch {
			case st.healthy:
				done[i], results[i].Healthy = true, true
				p.Line(ui.OK, t.Service, "healthy after %s", ui.Seconds(results[i].After))
			case st.fatal:
				done[i] = true
				failed = append(failed, i)
				p.Line(ui.Fail, t.Service, "%s after %s", st.state, ui.Seconds(results[i].After))
			default:
				pending++
			}
		}
		if ctx.Err() != nil {
			return results, fmt.Errorf("wait healthy: %w", ctx.Err())
		}
		if len(failed) > 0 || pending == 0 && dctx.Err() == nil {
			break
		}
		if dctx.Err() != nil {
			for i, t := range targets {
				if !done[i] {
					failed = append(failed, i)
					p.Line(ui.Fail, t.Service, "not healthy after %s: %s", deadline, results[i].State)
				}
			}
			break
		}
		select {
		case <-dctx.Done():
		case <-time.After(pollInterval):
		}
	}
	if len(failed) == 0 {
		return results, nil
	}
	return results, e.waitError(ctx, targets, results, failed, deadline)
}

func how(t WaitTarget, host string) string {
	switch {
	case t.HasHealthcheck:
		return "its healthcheck"
	case t.HostPort > 0:
		return "GET " + healthURL(t, host)
	default:
		return "it to run"
	}
}

func healthURL(t WaitTarget, host string) string {
	path := t.HealthPath
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	return "http://" + net.JoinHostPort(host, strconv.Itoa(t.HostPort)) + path
}

type probeState struct {
	id             string
	state          string
	healthy, fatal bool
}

// probe looks at every container of one service: the service is healthy
// when all of them are.
func (e *Engine) probe(ctx context.Context, hc *http.Client, host string, t WaitTarget, ids []string) probeState {
	if len(ids) == 0 {
		return probeState{state: "no container"}
	}
	var ownHealth bool
	for _, id := range ids {
		in, err := e.API.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
		if err != nil {
			return probeState{id: id, state: "inspect failed: " + err.Error()}
		}
		st := in.Container.State
		if st == nil {
			return probeState{id: id, state: "unknown"}
		}
		switch st.Status {
		case container.StateExited, container.StateDead:
			return probeState{id: id, state: fmt.Sprintf("%s (exit code %d)", st.Status, st.ExitCode), fatal: true}
		case container.StateRestarting:
			return probeState{id: id, state: fmt.Sprintf("restarting (last exit code %d, restarted %d times)", st.ExitCode, in.Container.RestartCount), fatal: true}
		case container.StateRunning:
		default:
			return probeState{id: id, state: string(st.Status)}
		}
		if st.Health != nil {
			ownHealth = true
			switch st.Health.Status {
			case container.Healthy:
			case container.Unhealthy:
				return probeState{id: id, state: "unhealthy" + lastHealthOutput(st.Health), fatal: true}
			default:
				return probeState{id: id, state: "health " + string(st.Health.Status)}
			}
		}
	}
	last := ids[len(ids)-1]
	if ownHealth || t.HostPort == 0 {
		return probeState{id: last, state: "running", healthy: true}
	}
	url := healthURL(t, host)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return probeState{id: last, state: err.Error(), fatal: true}
	}
	resp, err := hc.Do(req)
	if err != nil {
		var ue *neturl.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return probeState{id: last, state: "running, GET " + url + ": " + err.Error()}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return probeState{id: last, state: fmt.Sprintf("running, GET %s: %s", url, resp.Status)}
	}
	return probeState{id: last, state: "running", healthy: true}
}

func lastHealthOutput(h *container.Health) string {
	if len(h.Log) == 0 {
		return ""
	}
	out := strings.TrimSpace(h.Log[len(h.Log)-1].Output)
	if out == "" {
		return fmt.Sprintf(" (healthcheck exit code %d)", h.Log[len(h.Log)-1].ExitCode)
	}
	if len(out) > 200 {
		out = out[:200] + "…"
	}
	return " (healthcheck: " + out + ")"
}

// waitError names each failing service with its state and log tail.
func (e *Engine) waitError(ctx context.Context, targets []WaitTarget, results []WaitResult, failed []int, deadline time.Duration) error {
	var b strings.Builder
	names := make([]string, len(failed))
	for i, f := range failed {
		names[i] = targets[f].Service
	}
	fmt.Fprintf(&b, "not healthy: %s", strings.Join(names, ", "))
	for _, f := range failed {
		r := results[f]
		fmt.Fprintf(&b, "\n  %s: %s", r.Service, r.State)
		if !strings.HasPrefix(r.State, "exited") && !strings.HasPrefix(r.State, "restarting") && !strings.HasPrefix(r.State, "unhealthy") {
			fmt.Fprintf(&b, " (still not healthy when the %s deadline passed)", deadline)
		}
		if r.ContainerID == "" {
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		var logs bytes.Buffer
		err := e.Logs(lctx, r.ContainerID, LogTail, false, &logs)
		cancel()
		switch lines := tailLines(logs.String(), LogTail); {
		case err != nil:
			fmt.Fprintf(&b, "\n    (no logs: %v)", err)
		case len(lines) == 0:
			b.WriteString("\n    (its log is empty)")
		default:
			fmt.Fprintf(&b, "\n    last %d log lines of container %s:", len(lines), ShortID(r.ContainerID))
			b.WriteString(errTail(lines))
		}
	}
	return errors.New(b.String())
}
