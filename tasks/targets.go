// Package tasks holds the Mage targets of the deployment runner. A magefile
// pulls them in with
//
//	//mage:import
//	_ "github.com/maestro-platform/deploy/tasks"
//
// and may add targets of its own that call into the packages below tasks/
// (catalog, render, engine, compose, check, release, stack, importer, ui). Every
// target reads its settings from the environment; the README's table lists
// them all: DEPLOY_CATALOG, DEPLOY_DIR, DEPLOY_ENV, DEPLOY_OVERWRITE,
// DEPLOY_COMPOSE, DEPLOY_BUILDER, DOCKER_HOST and NO_COLOR.
package tasks

import (
	"context"
	"fmt"

	"github.com/magefile/mage/mg"

	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/maestro-platform/deploy/tasks/importer"
	"github.com/maestro-platform/deploy/tasks/release"
	"github.com/maestro-platform/deploy/tasks/stack"
)

// Render writes the deployment folder (compose files, .env, scripts) for dev from services.toml.
//
// The folder is swapped in whole or not at all. Files edited by hand since
// the last render stop it; DEPLOY_OVERWRITE=1 replaces them, keeping a backup.
func Render(ctx context.Context) error { return run(ctx, (*stack.Stack).Render) }

// Plan shows what would change, writing nothing: render's diff of the deployment folder, or with -env=NAME what a promote would replace and send.
//
// Without -env (or with the local environment) it prints, as a unified
// diff, what render would change in the deployment folder. With
// -env=demo (any promoted environment) it connects to the host and says,
// changing nothing there, which services a promote would start, replace
// or remove and why (image, configuration, which keys), and which images
// it would send, with their sizes.
//
// Exit status 0 means no changes; 3 (1 under `go run mage.go`) means
// changes; 2 means a bad catalog or argument.
func Plan(ctx context.Context, env *string) error {
	return run(ctx, func(s *stack.Stack, ctx context.Context) error {
		if local(s, env) {
			return s.Plan(ctx)
		}
		_, err := release.Plan(ctx, s.Cat, releaseOptions(s, env, false, false))
		return err
	})
}

// Import brings existing compose files (comma separated, or folders holding one) into the catalog, showing the change as a diff first.
//
// Each service becomes a new [[services]] entry ([[infrastructure]] when it
// publishes no port) appended to the catalog; what is there is never
// changed, and a service the catalog has already is left as it is.
// -dryRun shows the diff and writes nothing. Whatever the catalog cannot
// carry is listed with file:line and why, and nothing is written then
// (exit 2) unless -lossy is given. A file's x-maestro prebuild is a host
// command: it is imported only with -prebuild, with a warning. The README
// states the rules: ports, secrets, paths.
func Import(ctx context.Context, paths string, dryRun, lossy, prebuild *bool) error {
	if err := argsChecked(); err != nil {
		return exit(err)
	}
	cfg := stack.FromEnv()
	if cfg.Catalog == "" {
		cfg.Catalog = catalog.DefaultFile
	}
	_, err := importer.Import(ctx, importer.Options{Catalog: cfg.Catalog, Paths: stack.SplitList(paths),
		DryRun: dryRun != nil && *dryRun, Lossy: lossy != nil && *lossy, Prebuild: prebuild != nil && *prebuild})
	return exit(err)
}

// Build builds every service image through the Docker Engine, in parallel, reusing unchanged ones.
//
// An image is labelled with a content hash of its build context; when an
// image with that hash exists it is reused, and a service's prebuild command
// runs only when its inputs changed.
func Build(ctx context.Context) error { return run(ctx, (*stack.Stack).Build) }

// BuildOne builds the images of the named services only (comma separated).
func BuildOne(ctx context.Context, services string) error {
	return run(ctx, func(s *stack.Stack, ctx context.Context) error {
		return s.BuildServices(ctx, stack.SplitList(services))
	})
}

// Up starts the rendered stack on its dev ports and waits until every service is healthy.
func Up(ctx context.Context) error { return run(ctx, (*stack.Stack).Up) }

// TestAll checks every service's health and that the services reach each other (JUnit and JSON reports), on dev or with -env=NAME on that environment's host.
//
// On dev it records what it checked for promote's gate. With -env=demo
// (any promoted environment) it runs the same checks against the live
// host, as a promote runs them, and records nothing: the gate reads dev's
// testAll only.
func TestAll(ctx context.Context, env *string) error {
	return run(ctx, func(s *stack.Stack, ctx context.Context) error {
		if local(s, env) {
			return s.TestAll(ctx)
		}
		_, err := release.TestAll(ctx, s.Cat, releaseOptions(s, env, false, false))
		return err
	})
}

// DeployAll renders, builds, starts and tests the whole platform on dev ports: the one command.
func DeployAll(ctx context.Context) error {
	mg.SerialCtxDeps(ctx, Render, Build)
	// testAll's probe image builds while up waits for the services.
	mg.CtxDeps(ctx, Up, prepareTestAll)
	mg.SerialCtxDeps(ctx, testAllLocal)
	return run(ctx, (*stack.Stack).Summary)
}

// testAllLocal is testAll on dev, as deployAll's step.
func testAllLocal(ctx context.Context) error { return run(ctx, (*stack.Stack).TestAll) }

// prepareTestAll runs beside up, so not through run: it prints nothing
// and must not end up's live lines; what fails here, testAll reports.
func prepareTestAll(ctx context.Context) error {
	if s, err := stack.Open(stack.FromEnv()); err == nil {
		_ = s.PrepareTestAll(ctx)
	}
	return nil
}

// Status shows every service of the catalog on the dev stack, or with -env=NAME on that environment's host, and fails when one is not running and healthy.
//
// Locally: state, health, ports, image, uptime; a service without a
// container is listed as missing, and a container of the project that the
// catalog no longer names is listed too. With -env=demo (any promoted
// environment) it connects to the host, changing nothing and taking no
// lock: a row per container (per task, with its node, on a swarm), the
// release of this machine's records each runs, and the proxy. The exit
// status is 1 when any catalog service (or the proxy) is missing, stopped
// or unhealthy, naming them, so that scripts can rely on it.
func Status(ctx context.Context, env *string) error {
	return run(ctx, func(s *stack.Stack, ctx context.Context) error {
		if local(s, env) {
			return s.Status(ctx)
		}
		_, err := release.Status(ctx, s.Cat, releaseOptions(s, env, false, false))
		return err
	})
}

// local reports whether a target's -env names the local environment (or
// nothing): then it works on the dev stack, else on that environment's host.
func local(s *stack.Stack, env *string) bool {
	return env == nil || *env == "" || *env == s.Env.Name
}

// Logs prints what services printed (comma separated, or all), on the dev stack or with -env=NAME on that environment's host; -f follows.
//
// Flags: -env=NAME an environment's host instead of the dev stack (a
// swarm's tasks on every node); -f goes on printing what they print until
// Ctrl-C; -since=10m (or a time) leaves out what came before; -tail=N the
// last N lines of each container (default 100, 0 for all). Several
// services are printed side by side, each line after its service's name.
// Lines are cleaned of terminal escapes, and secrets are hidden.
func Logs(ctx context.Context, services string, env *string, f *bool, since *string, tail *int) error {
	return run(ctx, func(s *stack.Stack, ctx context.Context) error {
		names, err := stack.LogServices(s.Cat, stack.SplitList(services))
		if err != nil {
			return err
		}
		o := engine.LogOptions{Tail: defaultLogTail, Follow: flag(f)}
		if since != nil {
			o.Since = *since
		}
		if tail != nil {
			o.Tail = *tail
		}
		if local(s, env) {
			return s.Logs(ctx, names, o)
		}
		return release.Logs(ctx, s.Cat, releaseOptions(s, env, false, false), names, o)
	})
}

// defaultLogTail is how many of each container's last lines logs prints.
const defaultLogTail = 100

// Down stops and removes the dev stack's containers and network, or with -env=NAME -yes that environment's stack and proxy; volumes are kept unless -volumes.
//
// With -env=demo (any promoted environment) it asks for -yes, then takes
// the proxy and its edge network off the host, then the stack (a swarm's
// too), holding the environment's lock; the releases and the audit log
// stay, and the audit log records it. `mage promote -env=demo` starts it
// again from scratch. -wait waits for another promotion or rollback to end
// instead of failing at once.
func Down(ctx context.Context, volumes *bool, env *string, yes, wait *bool) error {
	return run(ctx, func(s *stack.Stack, ctx context.Context) error {
		if local(s, env) {
			return s.Down(ctx, flag(volumes))
		}
		if !flag(yes) {
			return &stack.UsageError{Msg: fmt.Sprintf("down -env=%s takes %s's stack and proxy off its host: add -yes to go ahead", *env, *env)}
		}
		return release.Down(ctx, s.Cat, releaseOptions(s, env, false, flag(wait)), flag(volumes))
	})
}

// Doctor checks the engine, the compose CLI, free dev ports, sources and toolchains, one line each; with -env=NAME what that environment's host needs.
//
// With -env=demo (any promoted environment) it connects as a promote does
// (host key, engine) and checks, changing nothing: the engine's version,
// the runtime (the compose CLI here, or the swarm's nodes), free space
// under the environment's folder, the host's clock, and each published
// port (free, or held by this project's proxy). Exit 1 names what failed.
func Doctor(ctx context.Context, env *string) error {
	return run(ctx, func(s *stack.Stack, ctx context.Context) error {
		if local(s, env) {
			return s.Doctor(ctx)
		}
		return release.Doctor(ctx, s.Cat, releaseOptions(s, env, false, false))
	})
}

// Promote ships the tested images to an environment's host (default demo), replacing only what changed, with no failed request.
//
// Flags: -env=NAME the environment (default demo); -force ships even what
// no passing testAll vouches for (it says so loudly, and the audit log
// records it); -wait waits for another promotion or rollback of the
// environment to end instead of failing at once; -release=ID puts a
// release kept on the host live again instead, forward or back, exactly
// as this machine shipped it (`mage releases` lists them).
//
// It refuses unless the last testAll on dev passed for the same images and
// configuration. Only services whose image or configuration changed are
// replaced, each new container beside its old one until it is healthy and
// takes the traffic; a release that fails is rolled back the same way.
func Promote(ctx context.Context, env *string, force, wait *bool, release *string) error {
	return promote(ctx, env, flag(force), flag(wait), release)
}

// promote is Promote, whose -release flag hides package release.
func promote(ctx context.Context, env *string, force, wait bool, kept *string) error {
	return runRelease(ctx, env, force, wait, func(ctx context.Context, s *stack.Stack, o release.Options) error {
		if kept != nil && *kept != "" {
			if force {
				return &stack.UsageError{Msg: "promote -release puts a kept release live as it was shipped: -force has nothing to skip there"}
			}
			o.Release = *kept
			return release.Rollback(ctx, s.Cat, o)
		}
		_, err := release.Promote(ctx, s.Cat, o)
		return err
	})
}

// Rollback puts the previous release of an environment (default demo) back, exactly as shipped, with no failed request.
//
// Flags: -env=NAME the environment (default demo); -wait waits for another
// promotion or rollback to end. The host's copy of the release must be
// what this machine shipped: a copy changed on the host is refused.
func Rollback(ctx context.Context, env *string, wait *bool) error {
	return runRelease(ctx, env, false, flag(wait), func(ctx context.Context, s *stack.Stack, o release.Options) error {
		return release.Rollback(ctx, s.Cat, o)
	})
}

// Releases lists the releases kept on an environment's host (default demo), the current one marked.
//
// Flags: -env=NAME the environment (default demo).
func Releases(ctx context.Context, env *string) error {
	return runRelease(ctx, env, false, false, func(ctx context.Context, s *stack.Stack, o release.Options) error {
		_, err := release.Releases(ctx, s.Cat, o)
		return err
	})
}

// Prune removes from an environment's host (default demo) the images of the catalog's services that no kept release uses, and says what it freed.
//
// Flags: -env=NAME the environment (default demo); -wait waits for another
// promotion or rollback to end. A promote that removes old releases
// prunes their images too. Images a container was made from are kept.
func Prune(ctx context.Context, env *string, wait *bool) error {
	return runRelease(ctx, env, false, flag(wait), func(ctx context.Context, s *stack.Stack, o release.Options) error {
		_, err := release.Prune(ctx, s.Cat, o)
		return err
	})
}

// History prints who promoted or rolled back what on an environment (default demo), and how it ended.
//
// Flags: -env=NAME the environment (default demo); -json prints one JSON
// record per line instead of a table, for scripts. The records live on
// the host, in the environment's folder (audit.log).
func History(ctx context.Context, env *string, json *bool) error {
	return runRelease(ctx, env, false, false, func(ctx context.Context, s *stack.Stack, o release.Options) error {
		_, err := release.History(ctx, s.Cat, o, flag(json))
		return err
	})
}

func flag(b *bool) bool { return b != nil && *b }
