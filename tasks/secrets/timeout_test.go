package secrets

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/maestro-platform/deploy/tasks/exitcode"
)

// A secrets_command that does not finish is stopped at the timeout, with
// an error saying so. The timeout is shortened for the test; nothing here
// measures how long anything took.
func TestCommandTimeout(t *testing.T) {
	old := commandTimeout
	commandTimeout = 200 * time.Millisecond
	defer func() { commandTimeout = old }()
	dir := t.TempDir()
	script := filepath.Join(dir, "hang.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho A=1\nexec sleep 600\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := runCommand(context.Background(), "dev", dir, []string{script}, nil)
	var se *SourceError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "did not finish within 200ms") || se.ExitStatus() != exitcode.Failure {
		t.Fatalf("err = %v, want a timeout", err)
	}

	// Cancelled by the caller: the caller's error, not a timeout.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = runCommand(ctx, "dev", dir, []string{script}, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestCappedKeepsTail(t *testing.T) {
	c := &capped{limit: 8, keepTail: true}
	c.Write([]byte("0123456789"))
	c.Write([]byte("ab"))
	if got := c.String(); got != "456789ab" {
		t.Errorf("tail %q, want 456789ab", got)
	}
	full := 0
	h := &capped{limit: 4, full: func() { full++ }}
	h.Write([]byte("abc"))
	h.Write([]byte("def"))
	h.Write([]byte("g"))
	if h.String() != "abcd" || !h.over || full != 1 {
		t.Errorf("head %q over %v full %d, want abcd, true, 1", h.String(), h.over, full)
	}
}
