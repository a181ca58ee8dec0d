package health_test

import (
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/maestro-platform/deploy/tasks/health"
	"github.com/maestro-platform/deploy/tasks/ui"
	"github.com/maestro-platform/deploy/tasks/ui/uitest"
)

// fakeSource is a stack whose services the test moves from state to state.
type fakeSource struct {
	mu  sync.Mutex
	obs map[string]health.Observation
}

func (f *fakeSource) set(service string, u health.Unit) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.obs[service] = health.Observation{Units: []health.Unit{u}}
}

func (f *fakeSource) Observe(context.Context) (map[string]health.Observation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]health.Observation{}
	for k, v := range f.obs {
		out[k] = v
	}
	return out, nil
}

func (f *fakeSource) Logs(_ context.Context, id string, _ int, w io.Writer) error {
	_, err := io.WriteString(w, "starting "+id+"\nfatal: token s3cr3t-marker refused\n")
	return err
}

func (f *fakeSource) Where() string { return "fake" }

// Off a terminal, the wait carries on the line a service already has
// ("starting"), prints a progress line with its state while it waits, and
// ends every line: healthy, failed, or stopped because another failed. A
// secret in a state, a health output or a log never shows.
func TestWaitShowsProgress(t *testing.T) {
	const secret = "s3cr3t-marker"
	redact := func(s string) string { return strings.ReplaceAll(s, secret, "***") }
	var out uitest.Buffer
	clk := uitest.NewClock()
	p := ui.Plain(&out)
	p.SetClock(clk)
	src := &fakeSource{obs: map[string]health.Observation{}}
	src.set("web", health.Unit{ID: "c1", Running: true, Health: "starting", State: "health starting"})
	src.set("db", health.Unit{ID: "c2", Running: true, Health: "starting", State: "health starting (" + secret + ")"})
	src.set("cache", health.Unit{ID: "c3", Running: true, Health: "starting", State: "health starting"})
	live := map[string]*ui.Activity{"web": p.Start("web", "starting")}

	done := make(chan struct{})
	var err error
	go func() {
		defer close(done)
		_, err = health.Wait(context.Background(), src, []health.Target{{Service: "web"}, {Service: "db"}, {Service: "cache"}},
			health.Options{Deadline: time.Minute, Printer: p, Redact: redact, Poll: time.Millisecond, Live: live})
	}()
	out.WaitFor(t, "… cache                    waiting for it to be healthy\n", done)
	// The observed state reaches the lines at the next poll: move the
	// clock on until a progress line carries it.
	for !strings.Contains(out.String(), "s: health starting (***)\n") {
		clk.Advance(ui.ProgressEvery)
		select {
		case <-done:
			t.Fatalf("the wait ended early: %v\n%s", err, out.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	src.set("web", health.Unit{ID: "c1", Running: true, Health: "healthy", State: "healthy"})
	out.WaitFor(t, "✔ web", done)
	src.set("db", health.Unit{ID: "c2", Health: "unhealthy", State: "unhealthy", Fatal: "unhealthy (healthcheck: " + secret + " refused)", HealthOutput: secret + " refused"})
	<-done

	text := out.String()
	t.Logf("output:\n%s\nerror:\n%v", text, err)
	last := -1
	for _, want := range []string{
		"… web                      starting\n",
		"… web                      waiting for it to be healthy\n",
		"… db                       still waiting for it to be healthy after ",
		"✔ web                      healthy after ",
		"✘ db                       unhealthy (healthcheck: *** refused) after ",
		"– cache                    stopped waiting after ",
	} {
		i := strings.Index(text, want)
		if i < 0 || i < last {
			t.Fatalf("%q missing or out of order", want)
		}
		last = i
	}
	if !strings.Contains(text, "because another service failed; it was health starting\n") {
		t.Error("the stopped line does not say why and where it was")
	}
	if err == nil || !strings.Contains(err.Error(), "not healthy: db") || !strings.Contains(err.Error(), "fatal: token *** refused") {
		t.Errorf("error lacks the service or its log tail: %v", err)
	}
	if strings.Contains(text, secret) || err != nil && strings.Contains(err.Error(), secret) {
		t.Error("the secret marker was shown")
	}
}
