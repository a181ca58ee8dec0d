package stack_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/maestro-platform/deploy/internal/testenv"
	"github.com/maestro-platform/deploy/tasks/stack"
	"github.com/maestro-platform/deploy/tasks/ui"
	"github.com/maestro-platform/deploy/tasks/ui/uitest"
)

// What a user sees of the real pipeline while it works.
//
// The build runs under a pseudo-terminal: the live area is redrawn in
// place while the six prebuilds and image builds run, and the screen ends
// with their result lines only.
//
// Then up runs off a terminal, through a wrapper of the real
// docker-compose that, after the real `up`, prints the deployment's .env
// (its secret among it) and waits on a FIFO. The test opens the FIFO only
// once compose's own lines and the wrapper's reached the output: they were
// shown while compose still ran. The secret never shows.
func TestLiveOutput(t *testing.T) {
	testenv.RequireDocker(t)
	testenv.RequireCommand(t, "docker-compose")
	ctx, cancel := testenv.Context(t)
	defer cancel()
	p := testenv.SamplePlatform(t, "live")
	marker := "secret-marker-" + testenv.ProjectName(t, "m")
	cat, _ := os.ReadFile(p.Catalog)
	text := strings.Replace(string(cat), `GATEWAY_API_TOKEN = "change-me-dev-token"`, `GATEWAY_API_TOKEN = "`+marker+`"`, 1)
	if text == string(cat) {
		t.Fatal("the sample catalog no longer has the gateway's secret")
	}
	// The health deadline out of reach: on a slow machine compose up may
	// outlast the sample's 2m, and a deadline passing while compose runs
	// rightly settles what was seen healthy; this test is about what is
	// shown while compose runs, and nothing here is meant to fail.
	longer := strings.Replace(text, `health_timeout = "2m"`, `health_timeout = "30m"`, 1)
	if longer == text {
		t.Fatal("the sample catalog no longer sets the dev health_timeout")
	}
	text = longer
	if err := os.WriteFile(p.Catalog, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	var out uitest.Buffer
	s, err := stack.Open(stack.Config{Catalog: p.Catalog, Out: ui.Plain(&out)})
	if err != nil {
		t.Fatal(err)
	}
	cleanup(t, s, p)
	if err := s.Render(ctx); err != nil {
		t.Fatal(err)
	}

	t.Run("build under a terminal", func(t *testing.T) {
		t.Setenv("NO_COLOR", "")
		t.Setenv("TERM", "xterm-256color")
		const cols = 200 // wide enough for the result lines not to wrap
		tty, screen, closeTTY := uitest.Terminal(t, 40, cols)
		st, err := stack.Open(stack.Config{Catalog: p.Catalog, Out: ui.New(tty)})
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Build(ctx); err != nil {
			t.Fatal(err)
		}
		st.Out.Line(ui.Info, "", "end of build")
		raw := screen.WaitFor(t, "end of build", nil)
		closeTTY()
		lines, err := uitest.Screen(raw, cols)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("screen:\n%s", strings.Join(lines, "\n"))
		if !strings.Contains(raw, "prebuilding (go build") || !strings.Contains(raw, "A\x1b[J") {
			t.Errorf("no live prebuild line, or no redraw in place")
		}
		// Only result lines stay: the header, a prebuilt and a built line
		// per service (in whatever order they finished), the total.
		prebuilt, built := 0, 0
		for _, l := range lines[1 : len(lines)-2] {
			switch {
			case strings.HasPrefix(l, "• ") && strings.Contains(l, " prebuilt (go build"):
				prebuilt++
			case strings.HasPrefix(l, "✔ ") && strings.Contains(l, " built "+p.Project+"/"):
				built++
			default:
				t.Errorf("unexpected line %q", l)
			}
		}
		if len(lines) != 15 || lines[0] != "▸ build 6 images" || prebuilt != 6 || built != 6 ||
			!strings.HasPrefix(lines[13], "✔ build                    6 built, 0 reused") || lines[14] != "• end of build" {
			t.Errorf("final screen is not the result lines")
		}
	})

	gate := filepath.Join(t.TempDir(), "gate")
	if err := syscall.Mkfifo(gate, 0o600); err != nil {
		t.Fatal(err)
	}
	wrapper := filepath.Join(t.TempDir(), "compose-wrapper")
	script := `#!/bin/sh
docker-compose "$@"
rc=$?
case " $* " in
*" up "*)
	# The first group's compose up only: the later groups start after it.
	if [ ! -e "$GATE.passed" ]; then
		echo "the deployment's .env:"
		cat .env
		echo "compose wrapper waits for the test"
		read x < "$GATE"
		: > "$GATE.passed"
	fi
	;;
esac
exit $rc
`
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DEPLOY_COMPOSE", wrapper)
	t.Setenv("GATE", gate)
	out.Reset()
	done := make(chan struct{})
	go func() {
		defer close(done)
		err = s.Up(ctx)
	}()
	seen := out.WaitFor(t, "compose wrapper waits for the test", done)
	if !strings.Contains(seen, "    Creating "+p.Project) || !strings.Contains(seen, "GATEWAY_API_TOKEN=***") {
		t.Errorf("compose's lines, or the redacted secret, were not shown while it ran:\n%s", seen)
	}
	// The wait runs beside compose, but calls nothing healthy while
	// compose may still replace it.
	if healthyVerdicts.MatchString(seen) {
		t.Errorf("a service was called healthy before compose ended:\n%s", seen)
	}
	if err := os.WriteFile(gate, []byte("go\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	<-done
	if err != nil {
		t.Fatal(err)
	}
	all := out.String()
	t.Logf("up:\n%s", all)
	last := -1
	for _, want := range []string{"… quality-fabric           starting\n", "… quality-fabric           waiting for it to be healthy",
		"    Creating " + p.Project, "compose wrapper waits for the test",
		// quality-fabric depends on others: a later group, whose compose
		// up starts only after the first group's ended.
		"    Creating " + p.Project + "_quality-fabric", "✔ quality-fabric           healthy after", "✔ up "} {
		i := strings.Index(all, want)
		if i < 0 || i < last {
			t.Fatalf("%q missing or out of order", want)
		}
		last = i
	}
	if c := len(healthyVerdicts.FindAllString(all, -1)); c != 6 {
		t.Errorf("%d healthy lines, want 6", c)
	}
	if strings.Contains(all, marker) {
		t.Error("the secret was shown")
	}
}

// healthyVerdicts matches a service's result line calling it healthy, and
// not a progress line that is still waiting ("… still waiting for it to
// be healthy after 10s"), which a slow machine prints.
var healthyVerdicts = regexp.MustCompile(`(?m)^✔ \S+ +healthy after `)
