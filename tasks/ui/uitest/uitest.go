// Package uitest helps test what a ui.Printer shows while work runs: a
// clock the test moves on by hand, so a test asserts that a progress line
// appears by advancing time rather than by sleeping, and a buffer that can
// be read while another goroutine prints into it.
package uitest

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
)

// Clock is a ui.Clock that moves only when Advance is called.
type Clock struct {
	mu      sync.Mutex
	now     time.Time
	tickers map[*ticker]bool
}

type ticker struct {
	c       chan time.Time
	stopped chan struct{}
}

// NewClock returns a Clock standing at an arbitrary fixed time.
func NewClock() *Clock {
	return &Clock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), tickers: map[*ticker]bool{}}
}

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// NewTicker returns a ticker that delivers a tick at every Advance,
// whatever d is.
func (c *Clock) NewTicker(d time.Duration) (<-chan time.Time, func()) {
	t := &ticker{c: make(chan time.Time), stopped: make(chan struct{})}
	c.mu.Lock()
	c.tickers[t] = true
	c.mu.Unlock()
	var once sync.Once
	return t.c, func() {
		once.Do(func() {
			c.mu.Lock()
			delete(c.tickers, t)
			c.mu.Unlock()
			close(t.stopped)
		})
	}
}

// Advance moves the clock on by d and delivers a tick to every running
// ticker. It returns once each ticker's reader has handled that tick: the
// tick goes out twice, unbuffered, and the reader can take the second only
// after it finished with the first. (A reader that stops meanwhile ends
// the wait.)
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	now := c.now
	var ts []*ticker
	for t := range c.tickers {
		ts = append(ts, t)
	}
	c.mu.Unlock()
	for _, t := range ts {
		for range 2 {
			select {
			case t.c <- now:
			case <-t.stopped:
			}
		}
	}
}

// Buffer is a bytes.Buffer safe for one goroutine to write while another
// reads, which can wait for some text to arrive.
type Buffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	changed chan struct{}
}

// Write appends to the buffer.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, err := b.b.Write(p)
	if b.changed != nil {
		close(b.changed)
		b.changed = nil
	}
	return n, err
}

// String is everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Reset empties the buffer.
func (b *Buffer) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.b.Reset()
}

// WaitTimeout bounds WaitFor: it only turns a hang into a failure, it is
// not a measure of speed.
const WaitTimeout = 2 * time.Minute

// WaitFor waits until the buffer holds text and returns what it holds
// then. It fails the test when stop is closed first (the work ended
// without printing text) or after WaitTimeout; stop may be nil.
func (b *Buffer) WaitFor(t testing.TB, text string, stop <-chan struct{}) string {
	t.Helper()
	deadline := time.After(WaitTimeout)
	for {
		b.mu.Lock()
		s := b.b.String()
		if strings.Contains(s, text) {
			b.mu.Unlock()
			return s
		}
		if b.changed == nil {
			b.changed = make(chan struct{})
		}
		changed := b.changed
		b.mu.Unlock()
		select {
		case <-changed:
		case <-stop:
			if s := b.String(); strings.Contains(s, text) {
				return s
			}
			t.Fatalf("the work ended before %q was printed:\n%s", text, b.String())
		case <-deadline:
			t.Fatalf("%q not printed after %s:\n%s", text, WaitTimeout, b.String())
		}
	}
}

// Terminal opens a pseudo-terminal of rows × cols and copies what is
// written to its terminal side, tty, into screen. closeTTY closes tty and
// returns once the copy has read everything written before. A machine
// without pseudo-terminals skips the test.
func Terminal(t testing.TB, rows, cols uint16) (tty *os.File, screen *Buffer, closeTTY func()) {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { ptmx.Close() })
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: rows, Cols: cols}); err != nil {
		t.Fatal(err)
	}
	screen = &Buffer{}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, err := io.Copy(screen, ptmx)
		// Linux ends a pty whose other side closed with EIO.
		if err != nil && !errors.Is(err, syscall.EIO) && !errors.Is(err, os.ErrClosed) {
			t.Errorf("read pty: %v", err)
		}
	}()
	return tty, screen, func() {
		tty.Close()
		<-copied
	}
}
