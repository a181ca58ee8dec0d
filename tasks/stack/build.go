package stack

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/maestro-platform/deploy/tasks/labels"

	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/maestro-platform/deploy/tasks/ui"
)

// BuildSpecs turns the catalog's buildable entries into engine build specs.
// Entries that run a prebuilt image are left out.
func BuildSpecs(cat *catalog.Catalog, only []string) ([]engine.BuildSpec, error) {
	want := map[string]bool{}
	for _, n := range only {
		if _, ok := cat.Service(n); !ok {
			return nil, &UsageError{Msg: fmt.Sprintf("no service %q in %s", n, cat.File)}
		}
		want[n] = true
	}
	var specs []engine.BuildSpec
	for _, s := range cat.All() {
		if s.Source == "" || (len(want) > 0 && !want[s.Name]) {
			continue
		}
		specs = append(specs, engine.BuildSpec{
			Service: s.Name, Context: s.Source, Dockerfile: s.Dockerfile,
			Repo:     cat.ImageRepo(s),
			Prebuild: s.Prebuild, PrebuildEnv: s.PrebuildEnv,
			PrebuildInputs: s.PrebuildInputs, PrebuildOutputs: s.PrebuildOutputs,
			Labels:    map[string]string{labels.Project: cat.Project.Name, labels.Service: s.Name},
			BuildArgs: s.BuildArgs, Target: s.BuildTarget,
		})
	}
	return specs, nil
}

// Build builds every image of the catalog.
func (s *Stack) Build(ctx context.Context) error { return s.BuildServices(ctx, nil) }

// BuildServices builds the images of the named services (all when empty).
func (s *Stack) BuildServices(ctx context.Context, only []string) error {
	start := time.Now()
	specs, err := BuildSpecs(s.Cat, only)
	if err != nil {
		return err
	}
	s.Out.Header("build %d images", len(specs))
	eng, err := s.engine(ctx)
	if err != nil {
		return err
	}
	defer eng.Close()
	res, err := eng.Build(ctx, specs, engine.BuildOptions{Printer: s.Out, StateDir: filepath.Join(s.Dir, ".state", "prebuild")})
	if err != nil {
		return err
	}
	built := 0
	for _, r := range res {
		session.recordBuild(r)
		if !r.Cached {
			built++
		}
	}
	if built == 0 {
		s.Out.Line(ui.OK, "build", "nothing to build: %d images up to date (%s)", len(res), since(start))
	} else {
		s.Out.Line(ui.OK, "build", "%d built, %d reused (%s)", built, len(res)-built, since(start))
	}
	return nil
}
