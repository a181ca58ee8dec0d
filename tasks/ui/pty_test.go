//go:build linux || darwin || freebsd

package ui

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/maestro-platform/deploy/tasks/ui/uitest"
)

// Under a real pseudo-terminal, as a user sees it: New recognises the
// terminal, asks its width, redraws the live area in place, and the
// screen ends with the final lines only.
func TestLiveAreaUnderPseudoTerminal(t *testing.T) {
	t.Setenv("NO_COLOR", "")
	t.Setenv("TERM", "xterm-256color")
	const cols = 72
	tty, screen, closeTTY := uitest.Terminal(t, 24, cols)

	clk := uitest.NewClock()
	p := New(tty)
	if !p.live {
		t.Fatal("a printer on a terminal is not live")
	}
	p.SetClock(clk)
	p.Header("up dev (project maestro)")
	a := p.Start("state-store", "starting")
	b := p.Start("template-service", "starting")
	p.Dim("    Creating maestro_state-store_1 ... done")
	a.Update("waiting for health", "health starting")
	clk.Advance(2 * time.Second)
	// A state too long for the 72 columns: cut, the elapsed time and the
	// progress kept.
	b.Update("waiting for it to be healthy, then GET http://127.0.0.1:9004/health", "running")
	clk.Advance(100 * time.Millisecond)
	// The whole redraw has arrived once its last line has (the terminal
	// turns "\n" into "\r\n").
	// Which redraw the screen shows first depends on the scheduler (the
	// one of the update, or the one of the tick), so the elapsed times are
	// masked: their place and width are what is compared.
	mid := maskElapsed(spinless(emulate(t, screen.WaitFor(t, "running\x1b[0m\r\n", nil), cols)))
	want := []string{
		"▸ up dev (project maestro)",
		"    Creating maestro_state-store_1 ... done",
		"* state-store                #.#s waiting for health · health starting",
		"* template-service           #.#s waiting for it to be healt… · running",
	}
	if strings.Join(mid, "\n") != strings.Join(want, "\n") {
		t.Errorf("screen while waiting:\n%s\nwant\n%s", strings.Join(mid, "\n"), strings.Join(want, "\n"))
	}

	a.Done(OK, "healthy")
	b.Done(Fail, "exited (exit code 2)")
	p.Line(Info, "", "end")
	end := emulate(t, screen.WaitFor(t, "end", nil), cols)
	want = []string{
		"▸ up dev (project maestro)",
		"    Creating maestro_state-store_1 ... done",
		"✔ state-store              healthy",
		"✘ template-service         exited (exit code 2)",
		"• end",
	}
	if strings.Join(end, "\n") != strings.Join(want, "\n") {
		t.Errorf("final screen:\n%s\nwant\n%s", strings.Join(end, "\n"), strings.Join(want, "\n"))
	}
	raw := screen.String()
	if !strings.Contains(raw, "\x1b[32m") || strings.Count(raw, "\x1b[2A\x1b[J") < 2 {
		t.Errorf("no colour, or the area was not redrawn in place: %q", raw)
	}
	closeTTY()
}

// elapsedTime is an elapsed time as a live line shows it.
var elapsedTime = regexp.MustCompile(`\b\d+\.\ds\b`)

// maskElapsed replaces the digits of every elapsed time on screen by #.
func maskElapsed(screen []string) []string {
	out := make([]string, len(screen))
	for i, l := range screen {
		out[i] = elapsedTime.ReplaceAllString(l, "#.#s")
	}
	return out
}
