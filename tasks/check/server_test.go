package check

import (
	"context"
	"testing"
	"time"

	"github.com/moby/moby/client"
)

func TestLocalEngine(t *testing.T) {
	for host, want := range map[string]bool{
		"unix:///var/run/docker.sock":      true,
		"unix:///tmp/x/docker.sock":        true,
		"tcp://127.0.0.1:2375":             true,
		"tcp://127.1.2.3:2375":             true,
		"tcp://localhost:2375":             true,
		"tcp://[::1]:2375":                 true,
		"tcp://10.1.2.3:2375":              false,
		"tcp://demo.example.internal:2376": false,
		// What the ssh connection helper hands the client.
		"http://docker.example.com": false,
	} {
		api, err := client.New(client.WithHost(host))
		if err != nil {
			t.Fatalf("%s: %v", host, err)
		}
		if got := LocalEngine(api); got != want {
			t.Errorf("LocalEngine(%s) = %v, want %v", host, got, want)
		}
		api.Close()
	}
	if LocalEngine(nil) {
		t.Error("LocalEngine(nil) = true")
	}
}

// BenchmarkRunReuse runs the checks of a test stack sized like the sample
// platform's testAll (17 checks: 3 container, 3 health, 6 network, 5 more
// http), with the one-shot probe container and with the probe server
// reused across runs. The reused figure is what a noop deployAll pays.
func BenchmarkRunReuse(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	st := startTestStack(b, ctx)
	var extra []string
	for i := range 4 {
		extra = append(extra, `name = "net`+string(rune('a'+i))+`"`+"\n"+`kind = "network"`+"\n"+`path = "/call/template-service"`)
	}
	for i := range 5 {
		extra = append(extra, `name = "http`+string(rune('a'+i))+`"`+"\n"+`path = "/health"`)
	}
	cat := st.catalog(b, extra...)
	env, _ := cat.Env("dev")
	for _, reuse := range []bool{false, true} {
		name := "one-shot"
		if reuse {
			name = "reused"
		}
		b.Run(name, func(b *testing.B) {
			t := Target{Env: env, Project: st.project, API: st.api, ReuseProbe: reuse}
			// The first reused run starts the server: not what is measured.
			if rep, err := Run(ctx, cat, t, Options{}); err != nil || len(rep.Results) != 17 {
				b.Fatalf("warm-up Run: %v", err)
			}
			var slowest time.Duration
			for b.Loop() {
				start := time.Now()
				rep, err := Run(ctx, cat, t, Options{})
				if err != nil || rep.Passed != 17 {
					b.Fatalf("Run: %v", err)
				}
				slowest = max(slowest, time.Since(start))
			}
			b.ReportMetric(slowest.Seconds(), "max-s/op")
		})
	}
}
