package catalog

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
