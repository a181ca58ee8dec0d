package runtime

import (
	"reflect"
	"testing"
	"time"

	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/health"
)

// Groups follow the longest chain of dependencies; a dependency outside
// the release does not hold a service back.
func TestStartGroups(t *testing.T) {
	got := startGroups([]Service{
		{Name: "db"},
		{Name: "api", DependsOn: []string{"db", "cache"}},
		{Name: "cache", DependsOn: []string{"db"}},
		{Name: "web", DependsOn: []string{"api", "elsewhere"}},
		{Name: "worker", DependsOn: []string{"db"}},
	})
	want := [][]string{{"db"}, {"cache", "worker"}, {"api"}, {"web"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("groups %q, want %q", got, want)
	}
}

// A group waits for its dependencies as depends_on says: healthy by
// default, only started when it says service_started; a failed one is
// reported; a verdict older than the previous group's start does not
// count.
func TestReadinessBlocking(t *testing.T) {
	cat := &catalog.Catalog{Services: []*catalog.Service{
		{Name: "db", Healthcheck: []string{"/db", "-check"}},
		{Name: "log", Healthcheck: []string{"/log", "-check"}},
		{Name: "api", DependsOn: []string{"db", "log"}, DependsOnConditions: map[string]string{"db": catalog.ConditionHealthy, "log": catalog.ConditionStarted}},
	}}
	svcs := []Service{{Name: "db"}, {Name: "log"}, {Name: "api", DependsOn: []string{"db", "log"}}}
	r := newReadiness()
	before := time.Now()
	if dep, failed := r.blocking(cat, svcs, []string{"api"}, before); dep != "db" || failed != "" {
		t.Fatalf("nothing seen: blocked by %q (%q), want db", dep, failed)
	}
	r.see("db", health.Verdict{Healthy: true, Started: true}, time.Now())
	r.see("log", health.Verdict{Started: true, State: "health starting"}, time.Now())
	if dep, failed := r.blocking(cat, svcs, []string{"api"}, before); dep != "" || failed != "" {
		t.Fatalf("db healthy, log started: blocked by %q (%q)", dep, failed)
	}
	if dep, _ := r.blocking(cat, svcs, []string{"api"}, time.Now().Add(time.Second)); dep != "db" {
		t.Fatalf("verdicts older than the last start count: blocked by %q", dep)
	}
	// An observation begun before the last start, judged after it, does
	// not count: it may be about a container compose replaced since.
	r.see("db", health.Verdict{Fatal: "exited (exit code 1)", Started: true}, before.Add(-time.Millisecond))
	if dep, failed := r.blocking(cat, svcs, []string{"api"}, before); dep != "db" || failed != "" {
		t.Fatalf("a stale failure: got %q (%q), want db still awaited", dep, failed)
	}
	r.see("db", health.Verdict{Fatal: "exited (exit code 1)", Started: true}, time.Now())
	if dep, failed := r.blocking(cat, svcs, []string{"api"}, before); dep != "db" || failed != "exited (exit code 1)" {
		t.Fatalf("db failed: got %q (%q)", dep, failed)
	}
	select {
	case <-r.changed:
	default:
		t.Fatal("a verdict did not wake the starter")
	}
}
