package stack_test

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/maestro-platform/deploy/internal/testenv"
	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/check"
	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/maestro-platform/deploy/tasks/exitcode"
	"github.com/maestro-platform/deploy/tasks/labels"
	"github.com/maestro-platform/deploy/tasks/stack"
	"github.com/maestro-platform/deploy/tasks/ui"
)

// `mage logs` prints what a container printed without its terminal escapes
// and with the environment's secrets hidden: here a service that prints
// an escape sequence (it would set the terminal's title) and its token.
func TestLogsCleanedAndRedacted(t *testing.T) {
	testenv.RequireDocker(t)
	testenv.RequireCommand(t, "go")
	const secret = "l0gs-gateway-token"
	t.Setenv("GATEWAY_API_TOKEN", secret)
	p := testenv.SamplePlatform(t, "logs")
	var out bytes.Buffer
	s, err := stack.Open(stack.Config{Catalog: p.Catalog, Out: ui.Plain(&out)})
	if err != nil {
		t.Fatal(err)
	}
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
	// The probe prints an unknown flag as given, and exits.
	created, err := e.API.ContainerCreate(ctx, client.ContainerCreateOptions{Name: s.Project() + "-maestro-gateway-1",
		Config: &container.Config{Image: img, Cmd: []string{"-\x1b]0;pwned\x07" + secret + "\x1b[2J"},
			Labels: map[string]string{labels.ComposeProject: s.Project(), labels.ComposeService: "maestro-gateway", labels.Probe: ""}},
		HostConfig: &container.HostConfig{NetworkMode: "none"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = e.API.ContainerRemove(context.Background(), created.ID, client.ContainerRemoveOptions{Force: true})
	})
	wait := e.API.ContainerWait(ctx, created.ID, client.ContainerWaitOptions{Condition: container.WaitConditionNextExit})
	if _, err := e.API.ContainerStart(ctx, created.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-wait.Result:
	case err := <-wait.Error:
		t.Fatal(err)
	}
	if err := s.Logs(ctx, []string{"maestro-gateway"}, engine.LogOptions{Tail: 100}); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	if !strings.Contains(got, "flag provided but not defined: -***") {
		t.Errorf("the logs lack the container's line with the secret hidden:\n%q", got)
	}
	if strings.ContainsAny(got, "\x1b\x07") || strings.Contains(got, "pwned") || strings.Contains(got, secret) {
		t.Errorf("the logs carry the escape sequence or the secret:\n%q", got)
	}
}

// logs names services of the catalog, several, or all; anything else is
// refused as bad input (exit 2) before the engine is asked.
func TestLogServices(t *testing.T) {
	cat, err := catalog.Parse("services.toml", "/srv/services.toml", []byte(`
[project]
name = "shop"

[[services]]
name = "web"
image = "nginx:1"
port = 8080
dev_port = 9080

[[services]]
name = "api"
image = "api:1"
port = 8081
dev_port = 9081
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		in   []string
		want []string
		err  string
	}{
		{in: []string{"api"}, want: []string{"api"}},
		{in: []string{"web", "api"}, want: []string{"web", "api"}},
		{in: []string{stack.AllServices}, want: []string{"web", "api"}},
		{in: []string{"web", "db"}, err: `no service "db" in /srv/services.toml`},
		{in: nil, err: "name a service of /srv/services.toml, several separated by commas, or all"},
	} {
		got, err := stack.LogServices(cat, tc.in)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err) || exitcode.Of(err) != exitcode.Usage):
			t.Errorf("%q: %v (exit %d), want %q, exit %d", tc.in, err, exitcode.Of(err), tc.err, exitcode.Usage)
		case tc.err == "" && (err != nil || !slices.Equal(got, tc.want)):
			t.Errorf("%q: %v %v, want %v", tc.in, got, err, tc.want)
		}
	}
}
