package check

import (
	"context"
	"fmt"
	"time"

	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/maestro-platform/deploy/tasks/health"
)

// observe returns what runs of the target's project, by service, through
// its runtime's health source: health's view, so that testAll and the
// deployment's health wait judge a service alike. Without one, the
// project's compose containers, stopped ones included, so that a crashed
// service is reported as such.
func observe(ctx context.Context, t Target) (map[string]health.Observation, error) {
	if t.Health != nil {
		return t.Health.Observe(ctx)
	}
	return (&health.Compose{Engine: &engine.Engine{API: t.API, Host: t.API.DaemonHost()}, Project: t.Project}).Observe(ctx)
}

// containerPolls is how many times a service whose health is still
// starting is looked at again, a second apart: right after `up`, that is
// normal.
const containerPolls = 5

// runContainers checks the state of every service's containers.
func runContainers(ctx context.Context, t Target, jobs []*job, results []Result) {
	for attempt := 1; ; attempt++ {
		start := time.Now()
		obs, err := observe(ctx, t)
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
