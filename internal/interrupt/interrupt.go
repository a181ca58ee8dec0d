// Package interrupt turns Ctrl-C into a cancelled context for commands
// that must finish cleanly when interrupted: a promotion puts the previous
// release back and writes its audit record, which takes longer than the
// five seconds mage's runner grants a target after SIGINT before it exits
// with "cleanup timeout exceeded".
package interrupt

import (
	"context"
	"errors"
	"os"
	"os/signal"
)

// ErrInterrupted is the cause of a context Context cancelled on Ctrl-C.
var ErrInterrupted = errors.New("interrupted (Ctrl-C)")

// ExitForced is the exit status after a second Ctrl-C (128 + SIGINT).
const ExitForced = 130

// Context returns ctx, cancelled with cause ErrInterrupted on the first
// SIGINT, after calling first (which says what happens now). SIGINT is
// taken from whoever listened for it before (mage's runner), so that the
// command, not the runner, decides when it is done. A second SIGINT exits
// at once with ExitForced. stop gives SIGINT back to its default.
func Context(ctx context.Context, first func()) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	signal.Reset(os.Interrupt)
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt)
	done := make(chan struct{})
	go func() {
		select {
		case <-ch:
		case <-done:
			return
		}
		if first != nil {
			first()
		}
		cancel(ErrInterrupted)
		select {
		case <-ch:
			os.Exit(ExitForced)
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(ch)
		close(done)
		cancel(nil)
	}
}

// Interrupted reports whether ctx was cancelled by Ctrl-C (Context).
func Interrupted(ctx context.Context) bool {
	return errors.Is(context.Cause(ctx), ErrInterrupted)
}
