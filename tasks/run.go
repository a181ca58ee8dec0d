package tasks

import (
	"context"
	"os"

	"github.com/magefile/mage/mg"

	"github.com/maestro-platform/deploy/internal/interrupt"
	"github.com/maestro-platform/deploy/tasks/exitcode"
	"github.com/maestro-platform/deploy/tasks/release"
	"github.com/maestro-platform/deploy/tasks/stack"
	"github.com/maestro-platform/deploy/tasks/ui"
)

// run opens the stack from the environment and runs one step, turning the
// error into mage's exit status: the one the error asks for
// (exitcode.Of).
func run(ctx context.Context, step func(*stack.Stack, context.Context) error) error {
	if err := argsChecked(); err != nil {
		return exit(err)
	}
	s, err := stack.Open(stack.FromEnv())
	if err != nil {
		return exit(err)
	}
	err = step(s, ctx)
	// Nothing may stay live once the step is over: mage prints the error
	// next, and a live line redrawn over it would hide it.
	s.Out.EndActivities()
	if exitcode.Of(err) == exitcode.Changes {
		// Changes found is plan's answer, not a failure: said as a result
		// line, without mage's "Error:", and told by the exit status.
		s.Out.Line(ui.Warn, "plan", "%v", err)
		os.Exit(exitcode.Changes)
	}
	return exit(err)
}

func runRelease(ctx context.Context, env *string, force, wait bool, step func(context.Context, *stack.Stack, release.Options) error) error {
	return run(ctx, func(s *stack.Stack, ctx context.Context) error {
		// Ctrl-C must not cut a promotion's recovery short: the step ends
		// itself, having put back what it changed and written its record.
		ctx, stop := interrupt.Context(ctx, func() {
			s.Out.Line(ui.Warn, "interrupt", "Ctrl-C: ending safely (a promote or rollback puts back what it changed on the host, and records it); Ctrl-C again stops at once (the next run converges)")
		})
		defer stop()
		return step(ctx, s, releaseOptions(s, env, force, wait))
	})
}

// releaseOptions are the options of a release target: the environment of
// -env (default demo), the local deployment folder for the records.
func releaseOptions(s *stack.Stack, env *string, force, wait bool) release.Options {
	o := release.Options{Env: release.DefaultEnv, Force: force, Wait: wait, Printer: s.Out, LocalDeployDir: s.Dir}
	if env != nil && *env != "" {
		o.Env = *env
	}
	return o
}

func exit(err error) error {
	if err == nil {
		return nil
	}
	// Errors quote daemons, hosts and containers: cleaned before the
	// terminal sees them, wherever they were made.
	return mg.Fatal(exitcode.Of(err), ui.Clean(err.Error()))
}
