package health

import (
	"strings"
	"testing"
)

func TestJudge(t *testing.T) {
	run := func(id, health string) Unit { return Unit{ID: id, Running: true, Health: health, State: "running"} }
	for name, tc := range map[string]struct {
		o                 Observation
		healthy, needsURL bool
		fatal, state      string
	}{
		"no units":                 {o: Observation{}, state: "no container"},
		"no service yet":           {o: Observation{Problem: "no such service yet"}, state: "no such service yet"},
		"running, no healthcheck":  {o: Observation{Units: []Unit{run("a", "")}}, healthy: true, needsURL: true, state: "running"},
		"healthy":                  {o: Observation{Units: []Unit{run("a", "healthy")}}, healthy: true, state: "healthy"},
		"starting":                 {o: Observation{Units: []Unit{{ID: "a", Running: true, Health: "starting", State: "health starting"}}}, state: "health starting"},
		"created":                  {o: Observation{Units: []Unit{{ID: "a", State: "created"}}}, state: "created"},
		"exited is fatal":          {o: Observation{Units: []Unit{run("a", "healthy"), {ID: "b", Fatal: "exited (exit code 2)"}}}, fatal: "exited (exit code 2)"},
		"two of three replicas":    {o: Observation{Want: 3, Units: []Unit{run("a", "healthy"), run("b", "healthy")}}, state: "2/3 running"},
		"three replicas":           {o: Observation{Want: 3, Units: []Unit{run("a", "healthy"), run("b", "healthy"), run("c", "healthy")}}, healthy: true, state: "3/3 running and healthy"},
		"update in progress":       {o: Observation{Units: []Unit{run("a", "")}, Problem: "update in progress"}, state: "update in progress"},
		"rolled back":              {o: Observation{Units: []Unit{run("a", "")}, Fatal: "update rollback_completed: x"}, fatal: "update rollback_completed: x"},
		"pending task with reason": {o: Observation{Units: []Unit{{ID: "t", State: "pending: no suitable node"}}}, state: "pending: no suitable node"},
		"exit 0 of a service":      {o: Observation{Units: []Unit{{ID: "a", Fatal: "exited (exit code 0)", Completed: true}}}, fatal: "exited (exit code 0)"},
		"one-shot completed":       {o: Observation{OneShot: true, Units: []Unit{{ID: "a", Fatal: "exited (exit code 0)", Completed: true}}}, healthy: true, state: "completed (exit code 0)"},
		"one-shot running":         {o: Observation{OneShot: true, Units: []Unit{run("a", "")}}, state: "running (runs once"},
		"one-shot failed":          {o: Observation{OneShot: true, Units: []Unit{{ID: "a", Fatal: "exited (exit code 3)"}}}, fatal: "exited (exit code 3)"},
		"one-shot not started":     {o: Observation{OneShot: true, Units: []Unit{{ID: "a", State: "created"}}}, state: "created"},
	} {
		v := Judge(tc.o)
		if v.Healthy != tc.healthy || v.Fatal != tc.fatal || v.NeedsURL != tc.needsURL || !strings.HasPrefix(v.State, tc.state) {
			t.Errorf("%s: %+v, want healthy=%v fatal=%q needsURL=%v state %q", name, v, tc.healthy, tc.fatal, tc.needsURL, tc.state)
		}
	}
}
