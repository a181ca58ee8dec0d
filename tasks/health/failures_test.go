package health

import (
	"context"
	"testing"
	"time"

	"github.com/maestro-platform/deploy/tasks/labels"
	"github.com/moby/moby/api/types/swarm"
)

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

// Right after a deploy changes only a service's environment, swarm may not
// have begun the update: the service has no update status yet and its old
// task still runs, with the same image. That task answers for the old
// spec, not the new one (a promote once judged quality-fabric healthy
// after 0.01 s this way and its testAll then found the update under way).
func TestSwarmOldSpecTaskDoesNotCount(t *testing.T) {
	task := func(hash string, state swarm.TaskState) swarm.Task {
		return swarm.Task{
			ID:           "t-" + hash,
			DesiredState: swarm.TaskStateRunning,
			Spec:         swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: "img:1", Labels: map[string]string{labels.ConfigHash: hash}}},
			Status:       swarm.TaskStatus{State: state, Timestamp: time.Unix(1, 0)},
		}
	}
	svc := swarm.Service{Spec: swarm.ServiceSpec{TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: "img:1", Labels: map[string]string{labels.ConfigHash: "new"}}}}}
	s := &Swarm{}
	if o := s.observe(context.Background(), svc, []swarm.Task{task("old", swarm.TaskStateRunning)}); Judge(o).Healthy || len(o.Units) != 0 {
		t.Errorf("only the old spec's task runs: units %+v, verdict %+v; want no unit, not healthy", o.Units, Judge(o))
	}
	o := s.observe(context.Background(), svc, []swarm.Task{task("old", swarm.TaskStateRunning), task("new", swarm.TaskStateRunning)})
	if !Judge(o).Healthy || len(o.Units) != 1 || o.Units[0].ConfigHash != "new" {
		t.Errorf("the new spec's task runs: units %+v, verdict %+v; want it alone, healthy", o.Units, Judge(o))
	}
}
