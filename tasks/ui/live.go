package ui

import (
	"bytes"
	"fmt"
	"strings"
	"time"
)

// The live area shows long work while it happens: one line per subject (a
// service, "images") for the step in progress, with the time the step has
// taken so far and, where it is known, progress (a build step, bytes
// sent).
//
// On a terminal the area sits below everything printed so far and is
// redrawn in place about ten times a second: the cursor goes back up over
// it, the rest of the screen is cleared and the area is written again, all
// in one write, so a line printed meanwhile (Line, Dim, a finished
// activity's result) lands above the area and the area follows it. Live
// lines are cut to the terminal's width: a line that wrapped would make the
// cursor-up count wrong and leave stale copies on the screen.
//
// Off a terminal (a CI log, a pipe, NO_COLOR) nothing is ever redrawn: an
// activity prints a line when it starts a step, a "still ... after" line at
// most every ProgressEvery while it runs, and its result line; logs stay
// readable and grep-able.

// ProgressEvery is how often, at most, an activity still running prints a
// progress line off a terminal.
const ProgressEvery = 10 * time.Second

// redrawEvery is the terminal's refresh rate: often enough that the elapsed
// time and spinner look alive, seldom enough to cost nothing.
const redrawEvery = 100 * time.Millisecond

// heartbeatEvery is how often the off-terminal loop looks for activities
// due a progress line; the line itself comes at most every ProgressEvery.
const heartbeatEvery = time.Second

// Clock is the time source of the live area, replaced in tests (see
// package uitest) so that a test advances time instead of sleeping.
type Clock interface {
	Now() time.Time
	// NewTicker delivers the time every d until stop is called.
	NewTicker(d time.Duration) (c <-chan time.Time, stop func())
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) NewTicker(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTicker(d)
	return t.C, t.Stop
}

// SetClock replaces the printer's clock. Call it before any activity
// starts.
func (p *Printer) SetClock(c Clock) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clock = c
}

// Activity is one subject's work in progress: a live line on a terminal,
// start and progress lines elsewhere. Its methods are safe for concurrent
// use; after Done they do nothing.
type Activity struct {
	p        *Printer
	subject  string
	state    string
	progress string
	// progressFn, when set, gives the progress each time it is shown.
	progressFn func(elapsed time.Duration) string
	since      time.Time // when its current step (state) began
	last       time.Time // when a line was last printed for it off a terminal
	shown      bool
	done       bool
}

// Activity returns an activity for subject that shows nothing until its
// first Update: work that may turn out to be instant (a cached image)
// then prints only its result, through Done.
func (p *Printer) Activity(subject string) *Activity {
	return &Activity{p: p, subject: subject}
}

// Start shows a live line for subject in state, e.g. "prebuilding"; off a
// terminal it prints that line once.
func (p *Printer) Start(subject, state string) *Activity {
	a := p.Activity(subject)
	a.Update(state, "")
	return a
}

// Update sets the activity's state and progress. A new state is a new
// step: it is shown at once, and off a terminal it prints a line. A new
// progress alone is shown at the next redraw on a terminal, and off it in
// the next periodic progress line.
func (a *Activity) Update(state, progress string) {
	p := a.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if a.done {
		return
	}
	newStep := !a.shown || state != a.state
	a.state, a.progress, a.progressFn = state, progress, nil
	if !a.shown {
		a.shown = true
		p.items = append(p.items, a)
		p.startLoopLocked()
	}
	if !newStep {
		return
	}
	// The time shown is the step's: "prebuilding 0.2s" after a long wait
	// for a CPU says more than the service's total.
	a.since, a.last = p.clock.Now(), p.clock.Now()
	if p.live {
		p.writeLocked("")
		return
	}
	msg := state
	if progress != "" {
		msg += ": " + progress
	}
	p.writeLocked(p.lineText(Run, a.subject, msg))
}

// Progress replaces the activity's progress ("[2/3] COPY app /app",
// "12.3 MB, 4.1 MB/s"), keeping its state. It does nothing before the
// activity was shown.
func (a *Activity) Progress(progress string) {
	p := a.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if a.shown && !a.done {
		a.progress, a.progressFn = progress, nil
	}
}

// ProgressFunc makes the activity's progress what f returns, asked each
// time the progress is shown with the time its step has taken so far: for a count that grows
// faster than it is drawn (bytes streamed), or a rate that must fall while
// nothing moves. f runs under the printer's lock: it must not print. A
// later Update or Progress replaces it.
func (a *Activity) ProgressFunc(f func(elapsed time.Duration) string) {
	p := a.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if a.shown && !a.done {
		a.progressFn = f
	}
}

// progressAt is the progress to show at now.
func (a *Activity) progressAt(now time.Time) string {
	if a.progressFn != nil {
		return a.progressFn(now.Sub(a.since))
	}
	return a.progress
}

// Done ends the activity with its result line, printed as Line prints it;
// on a terminal it replaces the live line, which leaves the area. Only the
// first Done counts.
func (a *Activity) Done(s Status, format string, args ...any) {
	p := a.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if a.done {
		return
	}
	a.done = true
	p.removeLocked(a)
	p.writeLocked(p.lineText(s, a.subject, fmt.Sprintf(format, args...)))
}

// EndActivities ends every activity still shown with a line saying what it
// was doing. A step calls it before it returns an error, so that the error,
// printed next, is never drawn over by a live line, and nothing is left
// redrawing.
func (p *Printer) EndActivities() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.items) > 0 {
		a := p.items[0]
		a.done = true
		p.removeLocked(a)
		p.writeLocked(p.lineText(Skip, a.subject, fmt.Sprintf("stopped while %s (%s)", a.state, plainElapsed(p.clock.Now().Sub(a.since)))))
	}
}

func (p *Printer) removeLocked(a *Activity) {
	for i, x := range p.items {
		if x == a {
			p.items = append(p.items[:i:i], p.items[i+1:]...)
			break
		}
	}
	if len(p.items) == 0 && p.quit != nil {
		close(p.quit)
		p.quit = nil
	}
}

// startLoopLocked starts the redraw (or, off a terminal, progress) loop if
// it is not running: it runs while there is an activity.
func (p *Printer) startLoopLocked() {
	if p.quit != nil {
		return
	}
	quit := make(chan struct{})
	p.quit = quit
	every := heartbeatEvery
	if p.live {
		every = redrawEvery
	}
	c, stop := p.clock.NewTicker(every)
	go p.loop(c, stop, quit)
}

func (p *Printer) loop(c <-chan time.Time, stop func(), quit chan struct{}) {
	defer stop()
	for {
		select {
		case <-quit:
			return
		case <-c:
			p.mu.Lock()
			if p.quit == quit {
				p.tickLocked()
			}
			p.mu.Unlock()
		}
	}
}

func (p *Printer) tickLocked() {
	if p.live {
		p.writeLocked("")
		return
	}
	now := p.clock.Now()
	var b strings.Builder
	for _, a := range p.items {
		if now.Sub(a.last) < ProgressEvery {
			continue
		}
		a.last = now
		msg := "still " + a.state + " after " + plainElapsed(now.Sub(a.since))
		if pr := a.progressAt(now); pr != "" {
			msg += ": " + pr
		}
		b.WriteString(p.lineText(Run, a.subject, msg))
	}
	if b.Len() > 0 {
		p.writeLocked(b.String())
	}
}

// writeLocked prints text (whole lines, or nothing) and, on a terminal,
// redraws the live area below it, in one write.
func (p *Printer) writeLocked(text string) {
	if !p.live || (p.drawn == 0 && len(p.items) == 0) {
		if text != "" {
			_, _ = fmt.Fprint(p.w, text)
		}
		return
	}
	var b strings.Builder
	if p.drawn > 0 {
		// Back to the first line of the area, then clear to the end of
		// the screen.
		fmt.Fprintf(&b, "\r\x1b[%dA\x1b[J", p.drawn)
	}
	b.WriteString(text)
	p.drawn = p.drawAreaLocked(&b)
	_, _ = fmt.Fprint(p.w, b.String())
}

var spinner = []rune("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏")

// drawAreaLocked writes the live lines and returns how many it wrote.
func (p *Printer) drawAreaLocked(b *strings.Builder) int {
	if len(p.items) == 0 {
		return 0
	}
	cols, rows := termSize(p.w)
	items := p.items
	more := 0
	// The area must fit the screen, or the cursor cannot get back up to
	// its first line.
	if limit := max(rows-2, 1); len(items) > limit {
		keep := limit - 1 // and a line saying how many more
		more, items = len(items)-keep, items[:keep]
	}
	now := p.clock.Now()
	// The spinner follows the clock, not the number of redraws: a line
	// printed meanwhile redraws too, and must not speed it up.
	mark := p.colors[Run].Sprint(string(spinner[int(now.UnixMilli()/redrawEvery.Milliseconds())%len(spinner)]))
	for _, a := range items {
		b.WriteString(p.liveLine(mark, a.subject, a.state, a.progressAt(now), now.Sub(a.since), cols-1))
		b.WriteByte('\n')
	}
	if more > 0 {
		b.WriteString(p.dim.Sprintf("  … and %d more", more))
		b.WriteByte('\n')
		return len(items) + 1
	}
	return len(items)
}

// liveLine is "⠹ subject   12.3s building repo:tag · [2/3] COPY app /app",
// at most width visible runes: the progress is cut first, then the state;
// the step's time, right after the subject, always shows.
func (p *Printer) liveLine(mark, subject, state, progress string, elapsed time.Duration, width int) string {
	head := mark + " " + p.bold.Sprint(pad(subject, 24)) + " " + fmt.Sprintf("%6s", liveElapsed(elapsed)) + " "
	room := width - visible(head)
	state, progress = oneLine(state), oneLine(progress)
	if room <= 1 {
		// A terminal too narrow for the head: the subject alone, plain,
		// so that the cut cannot fall inside a colour sequence.
		return cut(subject, width)
	}
	const sep, sepWidth = " · ", 3
	if n := len([]rune(progress)); progress != "" && len([]rune(state))+sepWidth+n > room {
		// A short progress ("12.3 MB, 4.1 MB/s") stays whole; otherwise
		// the state keeps at least half the room.
		state = cut(state, max(room-sepWidth-n, room/2))
		progress = cut(progress, room-len([]rune(state))-sepWidth)
		if len([]rune(progress)) < 4 {
			progress = ""
		}
	}
	line := head + cut(state, room)
	if progress != "" {
		line += p.dim.Sprint(sep + progress)
	}
	return line
}

// oneLine makes s safe to count as it is drawn: a line break or a tab
// would move the cursor other than its one rune counts.
var oneLine = strings.NewReplacer("\n", " ", "\r", " ", "\t", " ").Replace

// cut shortens plain text s to n runes, marking the cut.
func cut(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	if n <= 1 {
		return string(r[:max(n, 0)])
	}
	return string(r[:n-1]) + "…"
}

// liveElapsed is the elapsed time of a live line: tenths under a minute.
func liveElapsed(d time.Duration) string {
	if d < time.Minute {
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	return fmt.Sprintf("%dm%02ds", int(d/time.Minute), int(d%time.Minute/time.Second))
}

// plainElapsed is the elapsed time of a progress line: whole seconds.
func plainElapsed(d time.Duration) string { return d.Round(time.Second).String() }

// LineWriter passes what is written to it to a function, one complete
// line at a time, without its line break: for a command's output shown
// while it runs. A line longer than MaxLine is cut (marked "…"); the rest
// of it is dropped, so hostile output cannot fill memory. Close passes on
// a last line that has no line break. It is not safe for concurrent use:
// exec.Cmd serialises writes when Stdout and Stderr are the same writer.
type LineWriter struct {
	fn   func(string)
	buf  []byte
	over bool
}

// MaxLine is the longest line a LineWriter passes on whole.
const MaxLine = 64 << 10

// Lines returns a LineWriter calling fn.
func Lines(fn func(line string)) *LineWriter { return &LineWriter{fn: fn} }

// Write passes on each line b completes and keeps the rest for the next
// write. It never fails.
func (l *LineWriter) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		chunk := b
		if i >= 0 {
			chunk = b[:i]
		}
		if room := MaxLine - len(l.buf); len(chunk) > room {
			chunk, l.over = chunk[:max(room, 0)], true
		}
		l.buf = append(l.buf, chunk...)
		if i < 0 {
			break
		}
		l.flush()
		b = b[i+1:]
	}
	return n, nil
}

func (l *LineWriter) flush() {
	line := strings.TrimRight(string(l.buf), "\r")
	if l.over {
		line += "…"
	}
	l.buf, l.over = l.buf[:0], false
	l.fn(line)
}

// Close passes on an unterminated last line.
func (l *LineWriter) Close() error {
	if len(l.buf) > 0 || l.over {
		l.flush()
	}
	return nil
}
