package release

import (
	"context"
	"io"

	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/compose"
	"github.com/maestro-platform/deploy/tasks/render"
	"github.com/maestro-platform/deploy/tasks/ui"
)

// ComposeUpAll is the benchmarks' baseline: what a promote did before it
// replaced only what changed, on the same connection: `compose up -d` of
// the whole release in dir, every container recreated.
func ComposeUpAll(ctx context.Context, cat *catalog.Catalog, env *catalog.Environment, dir string) error {
	t, err := connect(ctx, cat, env, ui.Plain(io.Discard))
	if err != nil {
		return err
	}
	defer t.Close()
	cli, err := compose.Detect(ctx)
	if err != nil {
		return err
	}
	argv := cli.Args(cat.Project.Name, []string{render.ComposeFile}, "up", "-d", "--no-build", "--force-recreate")
	_, err = compose.ExecIsolated(ctx, dir, t.cliEnv, argv)
	return err
}

// HoldLock takes env's lock as a promote would, and keeps it until the
// returned func is called (or the process dies).
func HoldLock(ctx context.Context, cat *catalog.Catalog, env *catalog.Environment) (func(), error) {
	t, err := connect(ctx, cat, env, ui.Plain(io.Discard))
	if err != nil {
		return nil, err
	}
	l, err := t.acquire(ctx, "promote", false)
	if err != nil {
		t.Close()
		return nil, err
	}
	return func() { l.Release(); t.Close() }, nil
}
