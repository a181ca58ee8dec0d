package release_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/maestro-platform/deploy/internal/testenv"
	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/release"
	"github.com/maestro-platform/deploy/tasks/stack"
	"github.com/maestro-platform/deploy/tasks/ui"
)

// BenchmarkPromoteSample measures promote of the sample platform (6
// services, 17 checks), its dev stack running on this machine, against a
// second host over ssh: an unchanged promote, a promote of one changed
// service, a rollback; then the same three under load (demo/under-load,
// which fails on a failed request). The baseline, in the same run, is the same three
// against a second host whose sshd forwards no socket, so that every
// Engine API connection is a `docker system dial-stdio` over the ssh
// connection: the transport before the engine's socket was forwarded.
//
//	go test ./tasks/release -run XXX -bench PromoteSample -benchtime 3x
func BenchmarkPromoteSample(b *testing.B) {
	p := testenv.SamplePlatform(b, "psample")
	hosts := map[string]*testenv.Remote{
		"demo":     testenv.StartRemote(b),
		"baseline": testenv.StartRemoteWith(b, testenv.RemoteOptions{SSHD: []string{"AllowStreamLocalForwarding=no"}}),
	}
	text, err := os.ReadFile(p.Catalog)
	if err != nil {
		b.Fatal(err)
	}
	demo := sampleEnv(b, string(text))
	cat := string(text)
	for name, r := range hosts {
		env := strings.Replace(demo, "[environments.demo]", "[environments."+name+"]", 1)
		env = replaceKey(b, env, "host", r.Host)
		env = replaceKey(b, env, "dir", r.Dir)
		env = replaceKey(b, env, "known_hosts", r.KnownHosts)
		env += fmt.Sprintf("identity = %q\n", r.Identity)
		if name == "demo" {
			cat = strings.Replace(cat, demo, env, 1)
		} else {
			cat = strings.Replace(cat, "[environments.demo]", env+"\n[environments.demo]", 1)
		}
	}
	if err := os.WriteFile(p.Catalog, []byte(cat), 0o644); err != nil {
		b.Fatal(err)
	}
	b.Setenv("GATEWAY_API_TOKEN", "bench-token")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()

	// The dev stack, running for the whole benchmark, as when a developer
	// promotes; its passing testAll is what promote ships.
	s, err := stack.Open(stack.Config{Catalog: p.Catalog, Out: ui.Plain(io.Discard)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		_ = s.Down(ctx, true)
	})
	for _, step := range []func(context.Context) error{s.Render, s.Build, s.Up, s.TestAll} {
		if err := step(ctx); err != nil {
			b.Fatal(err)
		}
	}
	c, err := catalog.Load(p.Catalog)
	if err != nil {
		b.Fatal(err)
	}
	var out strings.Builder
	opts := func(env string, force bool) release.Options {
		out.Reset()
		return release.Options{Env: env, Printer: ui.Plain(&out), LocalDeployDir: p.Deploy, Force: force}
	}
	qf, _ := c.Service("quality-fabric")
	n := 0
	// Under load: every published port of the demo host gets 50 requests
	// a second, GET /health and POST /log, over new connections and
	// keep-alive, for the whole sub-benchmark; failed-requests says how
	// many of them failed.
	var targets [2][]string
	for _, s := range c.Services {
		if port, ok := s.HostPort("prod"); ok {
			targets[0] = append(targets[0], fmt.Sprintf("http://%s:%d/health", hosts["demo"].Addr, port))
			targets[1] = append(targets[1], fmt.Sprintf("http://%s:%d/log", hosts["demo"].Addr, port))
		}
	}
	underLoad := func(b *testing.B, fn func()) {
		hs := []string{hosts["demo"].Addr}
		st := testenv.DuringAll(b, []testenv.LoadSpec{{Targets: targets[0], Hosts: hs, Rate: 15},
			{Targets: targets[1], Hosts: hs, Rate: 10, Method: http.MethodPost, Body: "bench"}}, fn)
		b.ReportMetric(float64(st.Failed), "failed-requests")
		b.ReportMetric(float64(st.Total), "requests")
		testenv.NoFailures(b, b.Name(), st)
	}
	unchanged := func(b *testing.B, env string) {
		for b.Loop() {
			res, err := release.Promote(ctx, c, opts(env, false))
			if err != nil || res.Changes.Changed() {
				b.Fatalf("unchanged promote: %v\n%s", err, out.String())
			}
		}
	}
	oneChanged := func(b *testing.B, env string) {
		for b.Loop() {
			n++
			qf.Env["RELEASE_NOTE"] = strconv.Itoa(n)
			res, err := release.Promote(ctx, c, opts(env, true))
			if err != nil || res.Changes.Summary() != "1 replaced (quality-fabric), 5 unchanged" {
				b.Fatalf("one changed: %v\n%s", err, out.String())
			}
		}
	}
	rollback := func(b *testing.B, env string) {
		for b.Loop() {
			b.StopTimer()
			n++
			qf.Env["RELEASE_NOTE"] = strconv.Itoa(n)
			if _, err := release.Promote(ctx, c, opts(env, true)); err != nil {
				b.Fatalf("promote: %v\n%s", err, out.String())
			}
			b.StartTimer()
			if err := release.Rollback(ctx, c, opts(env, false)); err != nil {
				b.Fatalf("rollback: %v\n%s", err, out.String())
			}
		}
	}
	for _, name := range []string{"demo", "demo/under-load", "baseline"} {
		env, loaded := strings.CutSuffix(name, "/under-load")
		load := func(b *testing.B, fn func()) { fn() }
		if loaded {
			load = underLoad
		}
		if _, err := release.Promote(ctx, c, opts(env, false)); err != nil {
			b.Fatalf("first promote to %s: %v\n%s", env, err, out.String())
		}
		b.Run(name+"/unchanged", func(b *testing.B) { load(b, func() { unchanged(b, env) }) })
		b.Run(name+"/one-changed", func(b *testing.B) { load(b, func() { oneChanged(b, env) }) })
		b.Run(name+"/rollback", func(b *testing.B) { load(b, func() { rollback(b, env) }) })
		delete(qf.Env, "RELEASE_NOTE")
	}
}

// sampleEnv is the sample catalog's [environments.demo] block, up to the
// next table.
func sampleEnv(b *testing.B, cat string) string {
	i := strings.Index(cat, "[environments.demo]")
	if i < 0 {
		b.Fatal("the sample catalog has no [environments.demo]")
	}
	j := strings.Index(cat[i+1:], "\n[")
	if j < 0 {
		b.Fatal("nothing follows [environments.demo]")
	}
	return cat[i : i+1+j+1]
}

// replaceKey gives key a new value in a block of key = "value" lines.
func replaceKey(b *testing.B, block, key, value string) string {
	lines := strings.Split(block, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, key+" ") || strings.HasPrefix(l, key+"=") {
			lines[i] = fmt.Sprintf("%s = %q", key, value)
			return strings.Join(lines, "\n")
		}
	}
	b.Fatalf("no %s in\n%s", key, block)
	return ""
}
