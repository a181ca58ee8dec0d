// Package ui prints the runner's status lines and tables, and shows long
// work while it happens (Activity: a live area redrawn in place on a
// terminal, start and progress lines elsewhere). Colour and redrawing come
// from fatih/color and a few ANSI sequences; both are off under NO_COLOR,
// when the output is not a terminal, or when a Printer is made for a plain
// writer (tests, reports).
package ui

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/fatih/color"
	"github.com/mattn/go-isatty"
)

// Status is the outcome shown at the start of a line.
type Status int

// Statuses, each with its own colour and mark.
const (
	Info Status = iota
	OK
	Warn
	Fail
	Skip
	Run
)

var marks = map[Status]string{Info: "•", OK: "✔", Warn: "!", Fail: "✘", Skip: "–", Run: "…"}

// Printer writes status lines; it is safe for concurrent use, so parallel
// builds and checks can report through one Printer. On a terminal it also
// keeps a live area of activities in progress below its lines (see
// Activity).
type Printer struct {
	mu     sync.Mutex
	w      io.Writer
	colors map[Status]*color.Color
	bold   *color.Color
	dim    *color.Color
	plain  bool

	// live is true when activities are redrawn in place: on a terminal,
	// without NO_COLOR.
	live  bool
	clock Clock
	items []*Activity   // shown and not done, in start order
	drawn int           // lines of the live area now on the screen
	quit  chan struct{} // stops the loop; nil while it does not run
}

// New returns a Printer for w. Colour is used only when w is a terminal and
// NO_COLOR is unset.
func New(w io.Writer) *Printer {
	plain := os.Getenv("NO_COLOR") != "" || os.Getenv("TERM") == "dumb"
	if f, ok := w.(*os.File); !ok || !(isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())) {
		plain = true
	}
	return newPrinter(w, plain)
}

// Plain returns a Printer that never colours, whatever w is.
func Plain(w io.Writer) *Printer { return newPrinter(w, true) }

func newPrinter(w io.Writer, plain bool) *Printer {
	mk := func(a ...color.Attribute) *color.Color {
		c := color.New(a...)
		if plain {
			c.DisableColor()
		} else {
			c.EnableColor()
		}
		return c
	}
	return &Printer{w: w, plain: plain, live: !plain, clock: realClock{},
		colors: map[Status]*color.Color{
			Info: mk(color.FgCyan), OK: mk(color.FgGreen), Warn: mk(color.FgYellow),
			Fail: mk(color.FgRed, color.Bold), Skip: mk(color.FgHiBlack), Run: mk(color.FgBlue),
		},
		bold: mk(color.Bold), dim: mk(color.FgHiBlack)}
}

// Stdout is the Printer for the process's standard output.
func Stdout() *Printer { return New(os.Stdout) }

// Writer returns the underlying writer. What is written to it directly
// bypasses the live area: use it only while no activity runs.
func (p *Printer) Writer() io.Writer { return p.w }

// Line prints one status line: a coloured mark, a subject and a message.
func (p *Printer) Line(s Status, subject, format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.writeLocked(p.lineText(s, subject, fmt.Sprintf(format, args...)))
}

func (p *Printer) lineText(s Status, subject, msg string) string {
	if subject != "" {
		return fmt.Sprintf("%s %s %s\n", p.colors[s].Sprint(marks[s]), p.bold.Sprint(pad(subject, 24)), msg)
	}
	return fmt.Sprintf("%s %s\n", p.colors[s].Sprint(marks[s]), msg)
}

// Header prints a step title.
func (p *Printer) Header(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.writeLocked(p.bold.Sprintf("▸ "+format, args...) + "\n")
}

// Dim prints a quiet line (log tails, hints, a command's output).
func (p *Printer) Dim(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.writeLocked(p.dim.Sprintf(format, args...) + "\n")
}

// Colorize returns text in the status's colour.
func (p *Printer) Colorize(s Status, text string) string { return p.colors[s].Sprint(text) }

// Table prints rows under a header with aligned columns. A cell may carry
// colour codes: widths are measured on the visible text.
func (p *Printer) Table(header []string, rows [][]string) {
	widths := make([]int, len(header))
	for i, h := range header {
		widths[i] = visible(h)
	}
	for _, r := range rows {
		for i := range r {
			if i < len(widths) && visible(r[i]) > widths[i] {
				widths[i] = visible(r[i])
			}
		}
	}
	var out strings.Builder
	line := func(cells []string, bold bool) {
		var b strings.Builder
		for i, c := range cells {
			if i > 0 {
				b.WriteString("  ")
			}
			if bold {
				c = p.bold.Sprint(c)
			}
			b.WriteString(c)
			if i < len(cells)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-visible(cells[i])))
			}
		}
		out.WriteString(strings.TrimRight(b.String(), " ") + "\n")
	}
	line(header, true)
	for _, r := range rows {
		line(r, false)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.writeLocked(out.String())
}

// Seconds formats a duration for status lines: "1.24s".
func Seconds(d time.Duration) string { return fmt.Sprintf("%.2fs", d.Seconds()) }

// Bytes formats a byte count: "12.3 MB".
func Bytes(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}

func pad(s string, n int) string {
	if v := visible(s); v < n {
		return s + strings.Repeat(" ", n-v)
	}
	return s
}

// visible counts the runes of s outside ANSI escape sequences.
func visible(s string) int {
	n, esc := 0, false
	for _, r := range s {
		switch {
		case esc:
			if r == 'm' {
				esc = false
			}
		case r == '\x1b':
			esc = true
		default:
			n++
		}
	}
	return n
}

// Shorten cuts s to at most n runes, marking the cut with "…".
func Shorten(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}

// TailLines returns the last n non-empty lines of s.
func TailLines(s string, n int) []string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimRight(l, "\r "); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}

// Clean makes text that came from elsewhere (a container's log, a remote
// host's answer) safe to print: terminal escape sequences and other
// control characters are removed, so such text can neither recolour nor
// move the cursor, rewrite earlier lines or set the terminal's title.
// Newlines and tabs stay.
func Clean(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case r == '\x1b' || r == '\u009b':
			i = skipEscape(rs, i)
		case r == '\n' || r == '\t':
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0:
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// skipEscape returns the index of the last rune of the escape sequence
// starting at rs[i]: CSI (ESC [ ... final), OSC (ESC ] ... BEL or ST) or a
// two-rune ESC sequence.
func skipEscape(rs []rune, i int) int {
	csi := rs[i] == '\u009b'
	if !csi {
		if i+1 >= len(rs) {
			return i
		}
		switch rs[i+1] {
		case '[':
			csi, i = true, i+1
		case ']', 'P', '_', '^':
			for j := i + 2; j < len(rs); j++ {
				if rs[j] == '\a' {
					return j
				}
				if rs[j] == '\x1b' && j+1 < len(rs) && rs[j+1] == '\\' {
					return j + 1
				}
			}
			return len(rs) - 1
		default:
			return i + 1
		}
	}
	for j := i + 1; j < len(rs); j++ {
		if rs[j] >= 0x40 && rs[j] <= 0x7e {
			return j
		}
	}
	return len(rs) - 1
}
