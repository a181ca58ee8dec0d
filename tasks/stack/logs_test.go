package stack_test

import (
	"bytes"
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
