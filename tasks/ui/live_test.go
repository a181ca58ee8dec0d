package ui

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/maestro-platform/deploy/tasks/ui/uitest"
)

// Off a terminal: a line when a step starts, a "still ..." line at most
// every ProgressEvery while it runs (the clock is moved by hand, so the
// test says which lines come before which, not how long anything takes),
// and the result line. Nothing is redrawn.
func TestActivityOffTerminal(t *testing.T) {
	var out uitest.Buffer
	clk := uitest.NewClock()
	p := Plain(&out)
	p.SetClock(clk)

	a := p.Start("alpha", "prebuilding (go build)")
	a.Progress("compiling")
	clk.Advance(9 * time.Second)
	if strings.Contains(out.String(), "still") {
		t.Fatalf("a progress line before %s:\n%s", ProgressEvery, out.String())
	}
	clk.Advance(time.Second)
	b := p.Start("beta", "building example/beta:1")
	clk.Advance(5 * time.Second) // alpha and beta printed 5s ago: nothing
	clk.Advance(5 * time.Second)
	a.Update("building example/alpha:1", "")
	p.Line(Info, "gamma", "an ordinary line")
	a.Done(OK, "built example/alpha:1 in 21.00s")
	b.Done(Fail, "failed after 10.00s")
	p.Activity("delta").Done(Skip, "cached example/delta:1") // never shown: its result only
	clk.Advance(time.Minute)                                 // nothing runs: no line

	want := []string{
		"… alpha                    prebuilding (go build)",
		"… alpha                    still prebuilding (go build) after 10s: compiling",
		"… beta                     building example/beta:1",
		"… alpha                    still prebuilding (go build) after 20s: compiling",
		"… beta                     still building example/beta:1 after 10s",
		"… alpha                    building example/alpha:1",
		"• gamma                    an ordinary line",
		"✔ alpha                    built example/alpha:1 in 21.00s",
		"✘ beta                     failed after 10.00s",
		"– delta                    cached example/delta:1",
	}
	if got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if strings.Contains(out.String(), "\x1b") {
		t.Errorf("escape sequences off a terminal: %q", out.String())
	}
}

// EndActivities leaves nothing running, and says what each was doing.
func TestEndActivities(t *testing.T) {
	var out uitest.Buffer
	clk := uitest.NewClock()
	p := Plain(&out)
	p.SetClock(clk)
	a := p.Start("alpha", "waiting for health")
	clk.Advance(3 * time.Second)
	p.EndActivities()
	a.Done(OK, "healthy") // too late: ignored
	a.Update("again", "")
	if got := out.String(); !strings.Contains(got, "– alpha                    stopped while waiting for health (3s)") ||
		strings.Contains(got, "healthy\n") || strings.Contains(got, "again") {
		t.Errorf("output:\n%s", got)
	}
}

func TestLineWriter(t *testing.T) {
	var got []string
	w := Lines(func(l string) { got = append(got, l) })
	for _, chunk := range []string{"Creat", "ing a ... \r\n", "Creating b ... done\nStar", "ted\n\n", "no line break"} {
		if n, err := w.Write([]byte(chunk)); n != len(chunk) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if len(got) != 4 {
		t.Fatalf("before Close: %q", got)
	}
	w.Close()
	want := []string{"Creating a ... ", "Creating b ... done", "Started", "", "no line break"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("got %q, want %q", got, want)
	}

	// A line past MaxLine is cut, the rest of it dropped.
	got = nil
	w = Lines(func(l string) { got = append(got, l) })
	long := strings.Repeat("x", MaxLine+100)
	w.Write([]byte(long[:100]))
	w.Write([]byte(long[100:] + "\nnext\n"))
	if len(got) != 2 || len(got[0]) != MaxLine+len("…") || !strings.HasSuffix(got[0], "…") || got[1] != "next" {
		t.Errorf("long line: %d lines, first %d bytes", len(got), len(got[0]))
	}
}

// The live area on a terminal, emulated: ordinary lines go above it, the
// area is redrawn in place, and once every activity is done the screen
// holds only the final lines.
func TestLiveAreaRedrawsInPlace(t *testing.T) {
	var out uitest.Buffer
	clk := uitest.NewClock()
	p := newPrinter(&out, false) // coloured and live, as on a terminal
	p.SetClock(clk)

	p.Header("build 2 images")
	a := p.Start("alpha", "prebuilding (go build)")
	b := p.Start("beta", "waiting for the first go prebuild")
	clk.Advance(1500 * time.Millisecond)
	a.Progress("compiling")
	p.Line(Info, "alpha", "prebuilt (go build) in 1.50s")
	a.Update("building ex/alpha:1", "[1/2] COPY app /app")
	clk.Advance(100 * time.Millisecond)

	mid := spinless(emulate(t, out.String(), 80))
	wantMid := []string{
		"▸ build 2 images",
		"• alpha                    prebuilt (go build) in 1.50s",
		"* alpha                      0.1s building ex/alpha:1 · [1/2] COPY app /app",
		"* beta                       1.6s waiting for the first go prebuild",
	}
	if strings.Join(mid, "\n") != strings.Join(wantMid, "\n") {
		t.Errorf("screen while running:\n%s\nwant\n%s", strings.Join(mid, "\n"), strings.Join(wantMid, "\n"))
	}
	if !strings.Contains(out.String(), "\x1b[2A\x1b[J") {
		t.Errorf("the area was never redrawn in place: %q", out.String())
	}

	a.Done(OK, "built example/alpha:1 in 1.60s")
	clk.Advance(100 * time.Millisecond)
	b.Done(Fail, "failed after 1.70s")
	p.Table([]string{"SERVICE", "TIME"}, [][]string{{"alpha", "1.60s"}})
	clk.Advance(time.Second) // nothing runs: nothing redraws
	end := emulate(t, out.String(), 80)
	wantEnd := []string{
		"▸ build 2 images",
		"• alpha                    prebuilt (go build) in 1.50s",
		"✔ alpha                    built example/alpha:1 in 1.60s",
		"✘ beta                     failed after 1.70s",
		"SERVICE  TIME",
		"alpha    1.60s",
	}
	if strings.Join(end, "\n") != strings.Join(wantEnd, "\n") {
		t.Errorf("final screen:\n%s\nwant\n%s", strings.Join(end, "\n"), strings.Join(wantEnd, "\n"))
	}
}

// Live lines never wrap (a wrapped line would break the redraw), the
// elapsed time stays visible when the state is cut, and an area taller
// than the screen is cut to fit it.
func TestLiveLinesFitTheTerminal(t *testing.T) {
	p := newPrinter(&bytes.Buffer{}, true)
	state := "sending " + strings.Repeat("maestro/service:0123456789ab, ", 5) + "to ssh://demo"
	for _, width := range []int{10, 39, 60, 79, 200} {
		line := p.liveLine("⠋", "images", state, "12.3 MB, 4.1 MB/s", 75*time.Second, width)
		if visible(line) > width {
			t.Errorf("width %d: %d runes: %q", width, visible(line), line)
		}
		if width >= 39 && !strings.Contains(line, "1m15s") {
			t.Errorf("width %d: elapsed time lost: %q", width, line)
		}
		if width >= 79 && !strings.Contains(line, "12.3 MB") {
			t.Errorf("width %d: progress lost: %q", width, line)
		}
	}

	var out bytes.Buffer
	p = newPrinter(&out, false) // not a file: 80x24
	for i := range 30 {
		p.Start("svc"+strconv.Itoa(i), "starting")
	}
	screen := emulate(t, out.String(), 80)
	if len(screen) != 22 || screen[21] != "  … and 9 more" {
		t.Errorf("%d lines, last %q", len(screen), screen[len(screen)-1])
	}
	p.EndActivities()
	if screen := emulate(t, out.String(), 80); len(screen) != 30 || !strings.Contains(screen[29], "svc29") {
		t.Errorf("after EndActivities: %q", screen)
	}
}

// Many goroutines starting, updating and ending activities while lines
// are printed: the race detector stays quiet, and the screen ends with
// every final line and no live one.
func TestLiveAreaConcurrent(t *testing.T) {
	var out uitest.Buffer
	p := newPrinter(&out, false)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			a := p.Start(fmt.Sprint("svc", i), "building")
			for j := range 50 {
				a.Progress(fmt.Sprint("step ", j))
				if j%10 == 0 {
					p.Dim("    svc%d output %d", i, j)
				}
			}
			a.Done(OK, "built svc%d", i)
		})
	}
	wg.Wait()
	screen := emulate(t, out.String(), 80)
	built := 0
	for _, l := range screen {
		if strings.HasPrefix(l, "✔ svc") {
			built++
		}
		if strings.Contains(l, "building") {
			t.Errorf("a live line was left on the screen: %q", l)
		}
	}
	if built != 8 || len(screen) != 8+8*5 {
		t.Errorf("%d built lines, %d lines:\n%s", built, len(screen), strings.Join(screen, "\n"))
	}
}

// emulate is uitest.Screen, failing the test on what a terminal would not
// show as meant.
func emulate(t *testing.T, out string, width int) []string {
	t.Helper()
	screen, err := uitest.Screen(out, width)
	if err != nil {
		t.Fatal(err)
	}
	return screen
}

func spinless(screen []string) []string { return uitest.Spinless(screen) }
