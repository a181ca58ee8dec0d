package health

import (
	"context"
	"sync"
	"time"

	"github.com/moby/moby/api/types/container"

	"github.com/maestro-platform/deploy/tasks/engine"
)

// ProbeEvery is how often the runner runs a starting container's
// healthcheck itself. The rendered healthchecks run slowly (a probe every
// 30s costs nothing while the stack idles), and the engine's first check
// comes only one interval after the start (API 1.41 has no
// start_interval): without the runner's own probe, every start and every
// dependency would wait that long.
const ProbeEvery = 500 * time.Millisecond

// prober remembers the runner's probes of starting containers: which
// passed, and when each last ran. The zero value is ready.
type prober struct {
	passed map[string]bool
	last   map[string]time.Time
	output map[string]string
}

// settle runs, in parallel, the healthcheck of each running container
// that the engine still counts as starting (at most every ProbeEvery per
// container) and marks the ones whose check passed, now or before, as
// healthy; a failing check's output becomes the container's last health
// output while the engine has none. The engine's own verdict, once it has
// one, stands: an unhealthy container stays unhealthy.
func (p *prober) settle(ctx context.Context, eng *engine.Engine, cs []engine.Container) {
	if p.passed == nil {
		p.passed, p.last, p.output = map[string]bool{}, map[string]time.Time{}, map[string]string{}
	}
	var (
		wg sync.WaitGroup
		mu sync.Mutex
	)
	now := time.Now()
	for _, c := range cs {
		if c.State != string(container.StateRunning) || c.Health != string(container.Starting) || len(c.HealthTest) < 2 ||
			p.passed[c.ID] || now.Sub(p.last[c.ID]) < ProbeEvery {
			continue
		}
		p.last[c.ID] = now
		wg.Go(func() {
			out, ok, err := eng.RunHealthcheck(ctx, c)
			if err != nil {
				out = err.Error()
			}
			mu.Lock()
			defer mu.Unlock()
			p.passed[c.ID], p.output[c.ID] = ok, out
		})
	}
	wg.Wait()
	for i := range cs {
		c := &cs[i]
		if c.Health != string(container.Starting) {
			continue
		}
		if p.passed[c.ID] {
			c.Health = string(container.Healthy)
		}
		if c.HealthOutput == "" {
			c.HealthOutput = p.output[c.ID]
		}
	}
}

// Containers lists the project's containers as Compose observes them: a
// starting container whose healthcheck passes when the runner runs it is
// reported healthy (see ProbeEvery). Everything that judges a container
// lists it this way, so that a container is not healthy to one step and
// starting to the next.
func Containers(ctx context.Context, eng *engine.Engine, project string) ([]engine.Container, error) {
	cs, err := eng.Containers(ctx, project)
	if err != nil {
		return nil, err
	}
	(&prober{}).settle(ctx, eng, cs)
	return cs, nil
}
