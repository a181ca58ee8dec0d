package check

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/maestro-platform/deploy/tasks/labels"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// projectContainers returns the IDs of the project's containers by service
// name: compose containers when there are any (stopped ones included, so a
// crashed service is reported as such), else the running tasks of a swarm
// stack of that name.
func projectContainers(ctx context.Context, api *client.Client, project string) (map[string][]string, error) {
	res, err := api.ContainerList(ctx, client.ContainerListOptions{All: true,
		Filters: make(client.Filters).Add("label", labels.ComposeProject+"="+project)})
	if err != nil {
		return nil, fmt.Errorf("list containers of %s: %w", project, err)
	}
	out := map[string][]string{}
	for _, c := range res.Items {
		// `compose run` leaves one-off containers that are not the service;
		// the probe server carries the project label but is no service.
		if strings.EqualFold(c.Labels[labels.ComposeOneOff], "true") || c.Labels[labels.Probe] != "" {
			continue
		}
		out[c.Labels[labels.ComposeService]] = append(out[c.Labels[labels.ComposeService]], c.ID)
	}
	if len(out) > 0 {
		return out, nil
	}
	// Swarm keeps shut-down tasks around after updates: only running ones
	// are the service.
	res, err = api.ContainerList(ctx, client.ContainerListOptions{
		Filters: make(client.Filters).Add("label", labels.StackNamespace+"="+project)})
	if err != nil {
		return nil, fmt.Errorf("list containers of stack %s: %w", project, err)
	}
	for _, c := range res.Items {
		name := strings.TrimPrefix(c.Labels[labels.SwarmService], project+"_")
		out[name] = append(out[name], c.ID)
	}
	return out, nil
}

// runContainers checks the state of every service's containers.
func runContainers(ctx context.Context, t Target, jobs []*job, results []Result) {
	start := time.Now()
	groups, err := projectContainers(ctx, t.API, t.Project)
	if err != nil {
		for _, j := range jobs {
			results[j.idx].Detail = err.Error()
			results[j.idx].Latency = time.Since(start)
			results[j.idx].Attempts = 1
		}
		return
	}
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &results[j.idx]
			ids := groups[j.service.Name]
			if len(ids) == 0 {
				r.Attempts, r.Detail = 1, fmt.Sprintf("no container of service %s in project %s (is the stack up?)", j.service.Name, t.Project)
				return
			}
			containerState(ctx, t.API, ids, r)
		}()
	}
	wg.Wait()
}

// containerState judges a service's containers: all must run and, when
// they have a healthcheck, be healthy. A healthcheck still "starting" is
// polled a few times: right after `up`, that is normal.
func containerState(ctx context.Context, api *client.Client, ids []string, r *Result) {
	const polls = 5
	for attempt := 1; ; attempt++ {
		begin := time.Now()
		ok, starting, detail := inspectAll(ctx, api, ids)
		r.OK, r.Detail, r.Attempts, r.Latency = ok, detail, attempt, time.Since(begin)
		if ok || !starting || attempt == polls {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func inspectAll(ctx context.Context, api *client.Client, ids []string) (ok, starting bool, detail string) {
	healthy, running, checked := 0, 0, 0
	var problems []string
	for _, id := range ids {
		res, err := api.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
		if err != nil {
			problems = append(problems, fmt.Sprintf("inspect %s: %v", engine.ShortID(id), err))
			continue
		}
		st := res.Container.State
		name := strings.TrimPrefix(res.Container.Name, "/")
		switch {
		case st == nil:
			problems = append(problems, name+": no state")
		case !st.Running || st.Restarting || st.Paused:
			msg := fmt.Sprintf("%s: %s (exit code %d)", name, st.Status, st.ExitCode)
			if st.Error != "" {
				msg += ": " + st.Error
			}
			problems = append(problems, msg)
		case st.Health == nil:
			running++
		default:
			running++
			checked++
			switch st.Health.Status {
			case container.Healthy:
				healthy++
			case container.Starting:
				starting = true
				problems = append(problems, name+": health starting")
			default:
				problems = append(problems, fmt.Sprintf("%s: %s%s", name, st.Health.Status, lastHealthLog(st.Health)))
			}
		}
	}
	if len(problems) > 0 {
		return false, starting && running == len(ids), strings.Join(problems, "; ")
	}
	switch {
	case checked == 0:
		detail = "running (no healthcheck)"
	case checked == len(ids):
		detail = "healthy"
	default:
		detail = fmt.Sprintf("running, %d of %d with a healthcheck healthy", healthy, len(ids))
	}
	if len(ids) > 1 {
		detail = fmt.Sprintf("%d containers %s", len(ids), detail)
	}
	return true, false, detail
}

func lastHealthLog(h *container.Health) string {
	if len(h.Log) == 0 || h.Log[len(h.Log)-1] == nil {
		return ""
	}
	out := strings.Join(strings.Fields(h.Log[len(h.Log)-1].Output), " ")
	if out == "" {
		return ""
	}
	return ": " + out
}
