package health

import "testing"

// A swarm service's finished tasks explain why it is not running all its
// replicas, and are history once it does.
func TestSwarmFailuresAreHistoryOnceRunning(t *testing.T) {
	run := Unit{ID: "a", Running: true, State: "running"}
	pending := Unit{ID: "b", State: "pending"}
	fail := []string{"error while removing network: unknown network x"}
	if o := withFailures(Observation{Want: 2, Units: []Unit{run, run}}, fail); o.Problem != "" || !Judge(o).Healthy {
		t.Errorf("2/2 running: problem %q, verdict %+v; want healthy", o.Problem, Judge(o))
	}
	o := withFailures(Observation{Want: 2, Units: []Unit{run, pending}, Problem: "update in progress"}, []string{"No such image: x"})
	if o.Problem != "update in progress; failed tasks: No such image: x" || Judge(o).Healthy {
		t.Errorf("1/2 running: problem %q, verdict %+v", o.Problem, Judge(o))
	}
	if o := withFailures(Observation{Want: 1}, fail); o.Problem == "" {
		t.Error("no task running: the failures are the reason, and must show")
	}
}
