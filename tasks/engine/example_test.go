package engine_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/maestro-platform/deploy/tasks/ui"
)

// Building every service of a catalog, then waiting for the running stack.
func ExampleEngine_Build() {
	ctx := context.Background()
	var cat *catalog.Catalog          // from catalog.Load
	e, err := engine.Connect(ctx, "") // DOCKER_HOST or the default socket
	if err != nil {
		log.Fatal(err) // says whether the daemon is down and what to do
	}
	defer e.Close()

	var specs []engine.BuildSpec
	var targets []engine.WaitTarget
	for _, s := range cat.All() {
		if s.Image != "" {
			continue // prebuilt image: nothing to build
		}
		specs = append(specs, engine.BuildSpec{
			Service: s.Name, Context: s.Source, Dockerfile: s.Dockerfile, Repo: cat.ImageRepo(s),
			Prebuild: s.Prebuild, PrebuildEnv: s.PrebuildEnv,
			PrebuildInputs: s.PrebuildInputs, PrebuildOutputs: s.PrebuildOutputs,
		})
		port, _ := s.HostPort("dev")
		targets = append(targets, engine.WaitTarget{Service: s.Name, HealthPath: s.Health,
			HostPort: port, HasHealthcheck: len(s.Healthcheck) > 0})
	}
	p := ui.Stdout()
	results, err := e.Build(ctx, specs, engine.BuildOptions{Printer: p, StateDir: cat.Project.DeployDir + "/.state"})
	if err != nil {
		log.Fatal(err) // names every failed service with its output tail
	}
	for _, r := range results {
		fmt.Println(r.Service, r.Ref, r.Cached)
	}

	// ... `docker compose up -d` through package compose, then:
	if _, err := e.WaitHealthy(ctx, cat.Project.Name, "127.0.0.1", targets, 2*time.Minute, p); err != nil {
		log.Fatal(err) // names each failing service, its state and its last log lines
	}
}
