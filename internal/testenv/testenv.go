// Package testenv holds what the integration tests share: the rule that a
// missing Docker engine fails the suite under CI (and skips it elsewhere),
// unique project names, and free ports.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// InCI reports whether the tests run under CI (CI=true), where every
// integration test must run and an unreachable engine is a failure.
func InCI() bool { return os.Getenv("CI") == "true" }

// RequireDocker fails the test under CI, and skips it elsewhere, when the
// Docker engine cannot be reached, with the reason.
func RequireDocker(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", "version", "--format", "{{.Server.APIVersion}}").CombinedOutput()
	if err == nil {
		RunID(t) // sweeps what dead runs left before this one adds anything
		return
	}
	msg := "docker engine unreachable: " + strings.TrimSpace(string(out)) + ": " + err.Error()
	if InCI() {
		t.Fatal(msg + " (CI=true: integration tests must run)")
	}
	t.Skip(msg)
}

// RequireCommand fails under CI, and skips elsewhere, when a program the
// test needs is not installed.
func RequireCommand(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if InCI() {
		t.Fatalf("%s not installed (CI=true: .ci/run must install it)", name)
	}
	t.Skipf("%s not installed", name)
	return ""
}

// ProjectName returns a compose project name unique to this test, so that
// packages testing in parallel never share containers or networks. It
// carries the run's id ("stk-t1a2b3c4dx9f8e"), which is how a later run
// recognises and removes what this one leaves if it is killed (see Sweep).
func ProjectName(t testing.TB, prefix string) string {
	t.Helper()
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return prefix + "-t" + RunID(t) + "x" + hex.EncodeToString(b)
}

// FreePorts returns n distinct TCP ports free on 127.0.0.1 right now.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("free port: %v", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// ComposeV2 returns the command that runs compose v2: the path in
// MAESTRO_COMPOSE_V2 (.ci/run builds one there), else "docker compose" when
// the plugin answers. Without either it fails under CI and skips elsewhere.
func ComposeV2(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("MAESTRO_COMPOSE_V2"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("MAESTRO_COMPOSE_V2=%s: %v", p, err)
		}
		return p
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if exec.CommandContext(ctx, "docker", "compose", "version").Run() == nil {
		return "docker compose"
	}
	if InCI() {
		t.Fatal("compose v2 not found: set MAESTRO_COMPOSE_V2 or install the plugin (CI=true: .ci/run builds it)")
	}
	t.Skip("compose v2 not installed (set MAESTRO_COMPOSE_V2)")
	return ""
}

// Context is the context of a whole test: it ends a minute before the test
// binary's -timeout, so that the one wall-clock bound of a test is go
// test's own, with time left for its cleanups, however slow or busy the
// machine. Without a -timeout it only ends when cancelled.
func Context(t *testing.T) (context.Context, context.CancelFunc) {
	if d, ok := t.Deadline(); ok {
		return context.WithDeadline(context.Background(), d.Add(-time.Minute))
	}
	return context.WithCancel(context.Background())
}
