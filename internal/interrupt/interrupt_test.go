package interrupt_test

import (
	"context"
	"errors"
	"os"
	"syscall"
	"testing"

	"github.com/maestro-platform/deploy/internal/interrupt"
)

// SIGINT cancels the context with ErrInterrupted, after the first callback,
// and the process lives on to finish cleanly.
func TestContextCancelsOnSIGINT(t *testing.T) {
	said := make(chan struct{})
	ctx, stop := interrupt.Context(context.Background(), func() { close(said) })
	defer stop()
	if interrupt.Interrupted(ctx) {
		t.Fatal("interrupted before any signal")
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	<-ctx.Done()
	<-said
	if !interrupt.Interrupted(ctx) || !errors.Is(context.Cause(ctx), interrupt.ErrInterrupted) {
		t.Fatalf("cause %v, want ErrInterrupted", context.Cause(ctx))
	}
}

// A context stopped without a signal is not an interrupted one.
func TestStopIsNoInterrupt(t *testing.T) {
	ctx, stop := interrupt.Context(context.Background(), nil)
	stop()
	<-ctx.Done()
	if interrupt.Interrupted(ctx) {
		t.Fatal("stop reads as Ctrl-C")
	}
}
