package check

import (
	"context"
	"fmt"
	"time"

	"github.com/moby/moby/client"

	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/maestro-platform/deploy/tasks/health"
)

// observe returns what runs of the project, by service: compose
// containers when there are any (stopped ones included, so a crashed
// service is reported as such), else the tasks of a swarm stack of that
// name. It is health's view, so testAll and the deployment's health wait
// judge a service alike.
func observe(ctx context.Context, api *client.Client, project string) (map[string]health.Observation, error) {
	e := &engine.Engine{API: api, Host: api.DaemonHost()}
	obs, err := (&health.Compose{Engine: e, Project: project}).Observe(ctx)
	if err != nil || len(obs) > 0 {
		return obs, err
	}
	if info, err := api.Info(ctx, client.InfoOptions{}); err != nil || !info.Info.Swarm.ControlAvailable {
		return obs, nil // not a swarm manager: no stack to look at
	}
	return (&health.Swarm{Engine: e, Stack: project}).Observe(ctx)
}

// containerPolls is how many times a service whose health is still
// starting is looked at again, a second apart: right after `up`, that is
// normal.
const containerPolls = 5

// runContainers checks the state of every service's containers.
func runContainers(ctx context.Context, t Target, jobs []*job, results []Result) {
	for attempt := 1; ; attempt++ {
		start := time.Now()
		obs, err := observe(ctx, t.API, t.Project)
		starting := false
		for _, j := range jobs {
			r := &results[j.idx]
			r.Attempts, r.Latency = attempt, time.Since(start)
			if err != nil {
				r.Detail = err.Error()
				continue
			}
			o, ok := obs[j.service.Name]
			if !ok || len(o.Units) == 0 {
				r.OK, r.Detail = false, fmt.Sprintf("no container of service %s in project %s (is the stack up?)", j.service.Name, t.Project)
				continue
			}
			o.OneShot = j.oneShot
			r.Units = o.Units
			v := health.Judge(o)
			r.OK, r.Detail = v.Healthy, v.State
			if !v.Healthy && v.Fatal == "" && o.Problem == "" {
				starting = true
			}
		}
		if err != nil || !starting || attempt == containerPolls {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}
