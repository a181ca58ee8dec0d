package stack_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/maestro-platform/deploy/internal/testenv"
	"github.com/maestro-platform/deploy/tasks/compose"
	"github.com/maestro-platform/deploy/tasks/stack"
	"github.com/maestro-platform/deploy/tasks/ui"
)

// BenchmarkDeployAll measures deployAll of the sample platform, cold (no
// images, no containers, no prebuild stamps) and noop (nothing changed),
// against its baseline: the same work done by hand with the compose CLI,
// the prebuild commands, `compose up -d --build`, then polling the same
// health endpoints. Compare with benchstat (medians):
//
//	go test ./tasks/stack -run XXX -bench DeployAll -count 5 | benchstat -
func BenchmarkDeployAll(b *testing.B) {
	testenv.RequireDocker(b)
	p := testenv.SamplePlatform(b, "bench")
	ctx := context.Background()
	open := func() *stack.Stack {
		s, err := stack.Open(stack.Config{Catalog: p.Catalog, Out: ui.Plain(io.Discard)})
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
	s := open()
	b.Cleanup(func() { reset(b, s, p) })
	deploy := func(b *testing.B) {
		s := open()
		for _, step := range []func(context.Context) error{s.Render, s.Build, s.Up, s.TestAll} {
			if err := step(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	baseline := func(b *testing.B) {
		cli, err := compose.Detect(ctx)
		if err != nil {
			b.Fatal(err)
		}
		for _, svc := range s.Cat.All() {
			cmd := exec.CommandContext(ctx, svc.Prebuild[0], svc.Prebuild[1:]...)
			cmd.Dir = svc.Source
			cmd.Env = os.Environ()
			for k, v := range svc.PrebuildEnv {
				cmd.Env = append(cmd.Env, k+"="+v)
			}
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("prebuild %s: %v\n%s", svc.Name, err, out)
			}
		}
		args := append(cli.Args(p.Project, []string{"docker-compose.yml"}), "up", "-d", "--build")
		if out, err := compose.Exec(ctx, s.Dir, nil, args); err != nil {
			b.Fatalf("compose up --build: %v\n%s", err, out)
		}
		waitHTTP(b, p)
	}
	// Render once: the baseline needs the compose file.
	if err := s.Render(ctx); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		cold bool
		fn   func(*testing.B)
	}{
		{"cold/deployAll", true, deploy},
		{"cold/compose", true, baseline},
		{"noop/deployAll", false, deploy},
		{"noop/compose", false, baseline},
	} {
		b.Run(c.name, func(b *testing.B) {
			if !c.cold {
				c.fn(b) // bring the stack up once; then measure doing it again
			}
			for b.Loop() {
				if c.cold {
					b.StopTimer()
					reset(b, s, p)
					b.StartTimer()
				}
				c.fn(b)
			}
		})
	}
}

// reset takes the stack down and removes its images, the prebuild stamps
// and the binaries, so the next deploy starts cold.
func reset(b *testing.B, s *stack.Stack, p *testenv.Platform) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_ = s.Down(ctx, true)
	out, _ := exec.CommandContext(ctx, "docker", "images", "-q", "--filter", "reference="+p.Project+"/*").Output()
	if ids := strings.Fields(string(out)); len(ids) > 0 {
		_ = exec.CommandContext(ctx, "docker", append([]string{"rmi", "-f"}, ids...)...).Run()
	}
	_ = os.RemoveAll(filepath.Join(s.Dir, ".state"))
	for _, svc := range s.Cat.All() {
		_ = os.Remove(filepath.Join(svc.Source, "app"))
	}
}

// waitHTTP polls every published health endpoint until each answers 200:
// what a user of plain compose would script.
func waitHTTP(b *testing.B, p *testenv.Platform) {
	deadline := time.Now().Add(2 * time.Minute)
	c := &http.Client{Timeout: time.Second}
	for svc, port := range p.DevPorts {
		for {
			resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/health", port))
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
			}
			if time.Now().After(deadline) {
				b.Fatalf("%s never healthy", svc)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}
