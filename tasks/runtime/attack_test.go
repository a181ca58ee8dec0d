package runtime

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/maestro-platform/deploy/internal/testenv"
	"github.com/maestro-platform/deploy/tasks/check"
	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/maestro-platform/deploy/tasks/labels"
)

// A container's healthcheck prints what it likes: here a terminal escape
// (it would set the terminal's title) and a secret. The plan's reason,
// which apply prints and plan -env shows in its table, has neither.
func TestPlanCleansAndRedactsHealthOutput(t *testing.T) {
	testenv.RequireDocker(t)
	testenv.RequireCommand(t, "go")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	e, err := engine.Connect(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	img, err := check.EnsureProbe(ctx, e.API)
	if err != nil {
		t.Fatal(err)
	}
	const secret = "hunter2-health-secret"
	project := testenv.ProjectName(t, "rthealth")
	// The probe's flag parsing prints the unknown flag as given.
	created, err := e.API.ContainerCreate(ctx, client.ContainerCreateOptions{Name: project + "-web",
		Config: &container.Config{Image: img, Cmd: []string{"-serve", ":8099", "-idle", "0"}, Env: []string{"PROBE_TOKEN=x"},
			// The image's probe label blanked: this is a service here.
			Labels: map[string]string{labels.ComposeProject: project, labels.ComposeService: "web", labels.ConfigHash: "h", labels.Probe: ""},
			Healthcheck: &container.HealthConfig{Test: []string{"CMD", "/probe", "-\x1b]0;pwned\x07" + secret + "\x1b[2J"},
				Interval: 200 * time.Millisecond, Timeout: 5 * time.Second, Retries: 1}},
		HostConfig: &container.HostConfig{NetworkMode: "none"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = e.API.ContainerRemove(context.Background(), created.ID, client.ContainerRemoveOptions{Force: true})
	})
	if _, err := e.API.ContainerStart(ctx, created.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	for {
		in, err := e.API.ContainerInspect(ctx, created.ID, client.ContainerInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if h := in.Container.State.Health; h != nil && h.Status == container.Unhealthy {
			if n := len(h.Log); n == 0 || !strings.Contains(h.Log[n-1].Output, "\x1b]0;pwned") {
				t.Fatalf("the healthcheck did not print the escape sequence: %+v", h.Log)
			}
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("the container never became unhealthy")
		case <-time.After(200 * time.Millisecond):
		}
	}
	rel := &Release{Project: project, Services: []Service{{Name: "web", ConfigHash: "h"}},
		Redact: func(s string) string { return strings.ReplaceAll(s, secret, "***") }}
	pl, err := (&Compose{Engine: e}).Plan(ctx, rel)
	if err != nil {
		t.Fatal(err)
	}
	if len(pl.Changes) != 1 || pl.Changes[0].Action != Heal {
		t.Fatalf("plan %+v, want web healed", pl.Changes)
	}
	why := pl.Changes[0].Describe()
	if !strings.Contains(why, "flag provided but not defined") || !strings.Contains(why, "***") {
		t.Errorf("the reason %q does not quote the healthcheck's output", why)
	}
	if strings.ContainsAny(why, "\x1b\x07") || strings.Contains(why, "pwned") || strings.Contains(why, secret) {
		t.Errorf("the reason %q carries the escape sequence or the secret", why)
	}
}
