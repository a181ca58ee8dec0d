package tasks

import (
	"context"

	"github.com/magefile/mage/mg"

	"github.com/maestro-platform/deploy/tasks/release"
	"github.com/maestro-platform/deploy/tasks/stack"
)

// run opens the stack from the environment and runs one step, turning the
// error into mage's exit status: 2 for a bad catalog or settings, 3 for a
// plan with changes, 1 for everything else.
func run(ctx context.Context, step func(*stack.Stack, context.Context) error) error {
	s, err := stack.Open(stack.FromEnv())
	if err != nil {
		return exit(err)
	}
	return exit(step(s, ctx))
}

func runRelease(ctx context.Context, env *string, force bool, step func(context.Context, *stack.Stack, release.Options) error) error {
	return run(ctx, func(s *stack.Stack, ctx context.Context) error {
		o := release.Options{Env: "demo", Force: force, Printer: s.Out, LocalDeployDir: s.Dir}
		if env != nil && *env != "" {
			o.Env = *env
		}
		return step(ctx, s, o)
	})
}

func exit(err error) error {
	if err == nil {
		return nil
	}
	return mg.Fatal(stack.ExitCode(err), err.Error())
}
