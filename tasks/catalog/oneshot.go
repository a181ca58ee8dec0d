package catalog

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// ConditionCompleted is the depends_on condition that makes the
// dependency a one-shot service: it runs once, and its dependants start
// after it exits successfully (a database migration, say).
const ConditionCompleted = "service_completed_successfully"

// OneShot reports whether an entry of the catalog waits for name to
// complete: name is then a job that runs once and exits 0, healthy once
// it has, not a service that keeps running.
func (c *Catalog) OneShot(name string) bool {
	for _, s := range c.All() {
		if s.DependsOnConditions[name] == ConditionCompleted {
			return true
		}
	}
	return false
}

// oneShots checks the one-shot services: in a compose environment the
// container must not be restarted once it has exited (compose's restart
// "no" or "on-failure"), and a swarm, which restarts every task and
// ignores depends_on conditions, cannot run one.
func (v *validator) oneShots(cat *Catalog) {
	for _, s := range cat.All() {
		v.oneShot(cat, v.serviceKey(cat, s), s)
	}
}

func (v *validator) oneShot(cat *Catalog, key string, s *Service) {
	if !cat.OneShot(s.Name) {
		return
	}
	restartReported := false
	for _, n := range slices.Sorted(maps.Keys(cat.Environments)) {
		if cat.Environments[n].Engine == EngineSwarm {
			v.add(key, "run it in a compose environment, or make it a service that keeps running",
				"%s runs once (a dependant waits for it with %s), which environment %q cannot do: swarm restarts every task that exits", s.Name, ConditionCompleted, n)
			continue
		}
		r, _ := s.ComposeFor(n)["restart"].(string)
		if r == "no" || strings.HasPrefix(r, "on-failure") || restartReported {
			continue
		}
		what := "the default restart, unless-stopped,"
		if r != "" {
			what = fmt.Sprintf("restart %q", r)
		}
		v.add(key, `add compose = { restart = "no" } (or "on-failure") to it`,
			"%s runs once (a dependant waits for it with %s), but %s would start it again each time it exits", s.Name, ConditionCompleted, what)
		restartReported = true
	}
}
