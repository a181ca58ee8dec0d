package runtime

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/health"
)

// startGroups are rel's services in the groups they start in
// (catalog.StartGroups).
func startGroups(services []Service) [][]string {
	names := make([]string, len(services))
	for i, s := range services {
		names[i] = s.Name
	}
	return catalog.StartGroups(names, func(name string) []string { return dependencies(services, name) })
}

// readiness is what the health wait saw of each service (Options.Seen),
// for the starter.
type readiness struct {
	mu      sync.Mutex
	seen    map[string]seen
	changed chan struct{}
}

// seen is a verdict and when the observation it judges began.
type seen struct {
	health.Verdict
	at time.Time
}

func newReadiness() *readiness {
	return &readiness{seen: map[string]seen{}, changed: make(chan struct{}, 1)}
}

// see records a verdict on what was observed at that time, and wakes the
// starter.
func (r *readiness) see(service string, v health.Verdict, observed time.Time) {
	r.mu.Lock()
	r.seen[service] = seen{v, observed}
	r.mu.Unlock()
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// blocking names the first dependency of group that is not ready yet, as
// cat says each is waited for (healthy, completed or only started); failed
// says the dependency will not become ready: its containers were started
// by an earlier group, which compose had finished at since. Only verdicts
// on observations begun after since count: one begun while compose
// replaced a container may be about the old one.
func (r *readiness) blocking(cat *catalog.Catalog, services []Service, group []string, since time.Time) (dep string, failed string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	in := map[string]bool{}
	for _, s := range services {
		in[s.Name] = true
	}
	for _, name := range group {
		s, _ := cat.Service(name)
		for _, d := range dependencies(services, name) {
			if !in[d] {
				continue
			}
			v := r.seen[d]
			switch {
			case !v.at.After(since):
				return d, ""
			case v.Fatal != "":
				return d, v.Fatal
			case v.Healthy:
			case s != nil && cat.Condition(s, d) == catalog.ConditionStarted && v.Started:
			default:
				return d, ""
			}
		}
	}
	return "", ""
}

func dependencies(services []Service, name string) []string {
	for _, s := range services {
		if s.Name == name {
			return s.DependsOn
		}
	}
	return nil
}

// startInOrder runs compose up for rel's services group by group
// (startGroups): a group starts once the health wait saw every service it
// depends on ready, as the catalog's depends_on says (healthy, completed,
// or only started). Compose's own waiting for dependencies would wait for
// the engine's first healthcheck, an interval after each start; the wait
// runs the checks itself as soon as a container starts.
func (c *Compose) startInOrder(ctx context.Context, rel *Release, r *readiness) error {
	var since time.Time
	for _, group := range startGroups(rel.Services) {
		for {
			dep, failed := r.blocking(rel.Cat, rel.Services, group, since)
			if failed != "" {
				return fmt.Errorf("%s failed (%s): its dependants were not started", dep, failed)
			}
			if dep == "" {
				break
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-r.changed:
			}
		}
		if err := c.stream(ctx, rel, c.CLI.UpStackArgs(rel.Project, c.files(), group)); err != nil {
			return err
		}
		since = time.Now()
	}
	return nil
}
