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

// ConditionStarted is the depends_on condition that asks only that the
// dependency runs.
const ConditionStarted = "service_started"

// ConditionHealthy asks that the dependency's healthcheck passed.
const ConditionHealthy = "service_healthy"

// Condition is what s waits for of its dependency dep, as compose says it:
// the condition written in the table form of depends_on, else healthy
// when dep has a healthcheck of its own and started when it has none.
func (c *Catalog) Condition(s *Service, dep string) string {
	if cond, ok := s.DependsOnConditions[dep]; ok {
		return cond
	}
	if d, ok := c.Service(dep); ok && len(d.Healthcheck) > 0 {
		return ConditionHealthy
	}
	return ConditionStarted
}

// StartGroups splits names (in start order) into the groups they start in:
// a name goes in the group after the last of its dependencies (deps) among
// names, so that no group holds a service and one it depends on, and the
// order within a group is that of names. The runner starts the local stack
// this way and so does deploy-all.sh, each group once the previous ones
// are ready.
func StartGroups(names []string, deps func(name string) []string) [][]string {
	in := map[string]bool{}
	for _, n := range names {
		in[n] = true
	}
	level := map[string]int{}
	var levelOf func(name string, seen map[string]bool) int
	levelOf = func(name string, seen map[string]bool) int {
		if l, ok := level[name]; ok {
			return l
		}
		l := 0
		seen[name] = true // the catalog has no cycles; this only stops one
		for _, d := range deps(name) {
			if in[d] && !seen[d] {
				l = max(l, levelOf(d, seen)+1)
			}
		}
		level[name] = l
		return l
	}
	var groups [][]string
	for _, n := range names {
		l := levelOf(n, map[string]bool{})
		for len(groups) <= l {
			groups = append(groups, nil)
		}
		groups[l] = append(groups[l], n)
	}
	return groups
}
