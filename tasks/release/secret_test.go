package release_test

import (
	"os/exec"
	"testing"

	"github.com/maestro-platform/deploy/internal/testenv"
	"github.com/maestro-platform/deploy/tasks/release"
)

// generated is a secret as password generators make them: '$' with both
// quote kinds, a backslash, a line break and what looks like a variable.
const generated = "p$w'd\"q\\x\n${HOME}$$ end$"

// A secret holding '$', both quote kinds, a backslash and a line break is
// promoted to the second host with compose v1, compose v2 and as a swarm
// stack, and the container reads it byte-exact (the sample services answer
// POST /secret/NAME with 204 only for the exact value they hold).
func TestPromoteCarriesAnySecret(t *testing.T) {
	v2 := testenv.ComposeV2(t)
	for _, cli := range []struct{ name, path string }{{"compose v1", "docker-compose"}, {"compose v2", v2}} {
		t.Run(cli.name, func(t *testing.T) {
			t.Setenv("DEPLOY_COMPOSE", cli.path)
			f := newFixture(t)
			t.Setenv("API_TOKEN", generated)
			ctx, cancel := testenv.Context(t)
			defer cancel()
			f.build(ctx, nil)
			f.passTestAll(ctx)
			if _, err := release.Promote(ctx, f.cat, f.opts("e2e")); err != nil {
				t.Fatalf("promote: %v\n%s", err, f.out.String())
			}
			f.readsExactly(t, f.ports["template-service"])
			f.noLeak(ctx, t, generated)
		})
	}
	t.Run("swarm", func(t *testing.T) {
		f := newFixture(t)
		t.Setenv("API_TOKEN", generated)
		ctx, cancel := testenv.Context(t)
		defer cancel()
		init := exec.CommandContext(ctx, "docker", "-H", f.r.Socket, "swarm", "init", "--advertise-addr", f.r.Addr,
			"--default-addr-pool", "10.203.0.0/16")
		if out, err := init.CombinedOutput(); err != nil {
			t.Fatalf("swarm init: %v: %s", err, out)
		}
		t.Cleanup(func() {
			f.removeStack(t)
			if out, err := exec.Command("docker", "-H", f.r.Socket, "swarm", "leave", "--force").CombinedOutput(); err != nil {
				t.Logf("swarm leave: %v: %s", err, out)
			}
		})
		f.build(ctx, nil)
		f.passTestAll(ctx)
		if _, err := release.Promote(ctx, f.cat, f.opts("sw")); err != nil {
			t.Fatalf("promote: %v\n%s", err, f.out.String())
		}
		f.readsExactly(t, f.ports["sw/template-service"])
		f.noLeak(ctx, t, generated)
	})
}

// readsExactly checks that template-service, published on port of the
// host, holds API_TOKEN as generated, byte for byte.
func (f *fixture) readsExactly(t *testing.T, port int) {
	t.Helper()
	if code := f.post(t, port, "/secret/API_TOKEN", generated); code != 204 {
		t.Errorf("the container does not hold the secret byte-exact (POST /secret/API_TOKEN: %d)", code)
	}
	if code := f.post(t, port, "/secret/API_TOKEN", generated[:len(generated)-1]); code == 204 {
		t.Errorf("the container takes a shorter value for the secret: the check proves nothing")
	}
}
