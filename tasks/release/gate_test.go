package release_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/maestro-platform/deploy/internal/testenv"
	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/maestro-platform/deploy/tasks/release"
	"github.com/maestro-platform/deploy/tasks/stack"
	"github.com/maestro-platform/deploy/tasks/ui"
)

// The gate ships what testAll saw running, not what the catalog and
// :latest say after it: a catalog edited after up, then testAll alone, and
// an image built after up, then testAll alone, are both refused, naming
// the key and the image; after deployAll the gate passes. up and testAll
// say that the catalog changed since the last render.
func TestGateShipsWhatTestAllSawRunning(t *testing.T) {
	testenv.RequireDocker(t)
	testenv.RequireCommand(t, "docker-compose")
	ctx, cancel := testenv.Context(t)
	defer cancel()
	p := testenv.SamplePlatform(t, "gate")
	open := func() (*stack.Stack, *bytes.Buffer) {
		t.Helper()
		var out bytes.Buffer
		s, err := stack.Open(stack.Config{Catalog: p.Catalog, Out: ui.Plain(&out)})
		if err != nil {
			t.Fatal(err)
		}
		return s, &out
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		s, _ := open()
		_ = s.Down(ctx, true)
		p.RemoveImages(ctx)
	})
	deployAll := func() {
		t.Helper()
		s, out := open()
		for _, step := range []func(context.Context) error{s.Render, s.Build, s.Up, s.TestAll} {
			if err := step(ctx); err != nil {
				t.Fatalf("deployAll: %v\n%s", err, out)
			}
		}
	}
	gate := func() error {
		s, _ := open()
		_, err := release.Gate(ctx, s.Cat, release.Options{Env: "demo", LocalDeployDir: s.Dir})
		return err
	}
	refused := func(err error, want ...string) {
		t.Helper()
		var ge *release.GateError
		if !errors.As(err, &ge) {
			t.Fatalf("the gate let it through: %v", err)
		}
		for _, w := range append(want, "fix: run `mage deployAll` on dev (or `mage up`, then `mage testAll`)") {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("the refusal lacks %q:\n%v", w, err)
			}
		}
	}
	deployAll()
	if err := gate(); err != nil {
		t.Fatalf("the gate refuses what deployAll just tested: %v", err)
	}

	t.Run("catalog edited, then testAll alone", func(t *testing.T) {
		cat, _ := os.ReadFile(p.Catalog)
		old := `SERVICE_NAME = "maestro-gateway", PORT = "8080", LOG_LEVEL = "info"`
		edited := strings.Replace(string(cat), old, strings.Replace(old, `"info"`, `"debug"`, 1), 1)
		if edited == string(cat) {
			t.Fatal("the gateway's env is not where the test expects it")
		}
		if err := os.WriteFile(p.Catalog, []byte(edited), 0o644); err != nil {
			t.Fatal(err)
		}
		drift := `maestro-gateway: env.LOG_LEVEL "info" -> "debug"`
		s, out := open()
		if err := s.Up(ctx); err != nil {
			t.Fatalf("up: %v\n%s", err, out)
		}
		if !strings.Contains(out.String(), "the catalog changed since the last render") || !strings.Contains(out.String(), drift) ||
			!strings.Contains(out.String(), "run `mage render` first") {
			t.Errorf("up does not say that the catalog changed since the last render:\n%s", out)
		}
		s, out = open()
		if err := s.TestAll(ctx); err != nil {
			t.Fatalf("testAll of the running stack: %v\n%s", err, out)
		}
		if !strings.Contains(out.String(), "the catalog changed since the last render") || !strings.Contains(out.String(), drift) {
			t.Errorf("testAll does not say that the catalog changed since the last render:\n%s", out)
		}
		refused(gate(), "since the container testAll checked was started, "+drift)
		deployAll()
		if err := gate(); err != nil {
			t.Fatalf("after deployAll: %v", err)
		}
	})

	t.Run("image built, then testAll alone", func(t *testing.T) {
		eng, err := engine.Connect(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		defer eng.Close()
		s, out := open()
		svc, _ := s.Cat.Service("quality-fabric")
		ran, err := eng.Image(ctx, s.Cat.ImageRef(svc))
		if err != nil {
			t.Fatal(err)
		}
		mainGo := filepath.Join(p.Root, "examples/maestro-platform/quality-fabric/main.go")
		b, _ := os.ReadFile(mainGo)
		if err := os.WriteFile(mainGo, append(b, []byte("\n// changed by the gate test\nvar _ = 2\n")...), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := s.BuildServices(ctx, []string{"quality-fabric"}); err != nil {
			t.Fatalf("buildOne: %v\n%s", err, out)
		}
		built, err := eng.Image(ctx, s.Cat.ImageRef(svc))
		if err != nil || built.ID == ran.ID {
			t.Fatalf("the build made no new image: %v", err)
		}
		if !strings.Contains(out.String(), "built "+s.Cat.ImageRepo(svc)+":"+built.Name()) {
			t.Errorf("build does not name the image %s:\n%s", built.Name(), out)
		}
		s, out = open()
		if err := s.TestAll(ctx); err != nil {
			t.Fatalf("testAll of the running stack: %v\n%s", err, out)
		}
		refused(gate(), "quality-fabric: image "+built.Name()+" ("+s.Cat.ImageRef(svc)+" now) is not "+ran.Name()+", which its container ran")
		deployAll()
		if err := gate(); err != nil {
			t.Fatalf("after deployAll: %v", err)
		}
	})
}
