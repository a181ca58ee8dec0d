package release_test

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/maestro-platform/deploy/tasks/record"
	"github.com/maestro-platform/deploy/tasks/release"
)

// BenchmarkPromote measures, against a real second host over ssh, an
// unchanged promote, a promote of one changed service, a rollback, and
// the baseline: compose up -d of the whole release over the same
// connection, every container recreated, as promote did before it
// replaced only what changed.
//
//	go test ./tasks/release -run XXX -bench Promote -benchtime 5x
func BenchmarkPromote(b *testing.B) {
	f := newFixture(b)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	f.build(ctx, nil)
	f.passTestAll(ctx)
	if _, err := release.Promote(ctx, f.cat, f.opts("e2e")); err != nil {
		b.Fatalf("first promote: %v\n%s", err, f.out.String())
	}
	promote := func(b *testing.B, force bool) *release.Result {
		o := f.opts("e2e")
		o.Force = force
		res, err := release.Promote(ctx, f.cat, o)
		if err != nil {
			b.Fatalf("promote: %v\n%s", err, f.out.String())
		}
		return res
	}
	b.Run("unchanged", func(b *testing.B) {
		for b.Loop() {
			if res := promote(b, false); res.Changes.Changed() {
				b.Fatalf("an unchanged promote changed %s", res.Changes.Summary())
			}
		}
	})
	qf, _ := f.cat.Service("quality-fabric")
	n := 0
	b.Run("one-changed", func(b *testing.B) {
		for b.Loop() {
			n++
			qf.Env["RELEASE_NOTE"] = strconv.Itoa(n)
			if res := promote(b, true); res.Changes.Summary() != "1 replaced (quality-fabric), 2 unchanged" {
				b.Fatalf("changes: %s", res.Changes.Summary())
			}
		}
	})
	b.Run("rollback", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			n++
			qf.Env["RELEASE_NOTE"] = strconv.Itoa(n)
			promote(b, true)
			b.StartTimer()
			t0 := time.Now()
			if err := release.Rollback(ctx, f.cat, f.opts("e2e")); err != nil {
				b.Fatalf("rollback: %v\n%s", err, f.out.String())
			}
			if testing.Verbose() {
				b.Logf("rollback in %s:\n%s", time.Since(t0), f.out.String())
			}
		}
	})
	b.Run("baseline-compose-up-all", func(b *testing.B) {
		env := f.cat.Environments["e2e"]
		rels := record.Releases(f.deploy, "e2e")
		_, dir, err := record.LoadRelease(f.deploy, "e2e", rels[len(rels)-1])
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if err := release.ComposeUpAll(ctx, f.cat, env, filepath.Clean(dir)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
