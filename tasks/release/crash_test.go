package release_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/maestro-platform/deploy/internal/crashpoint"
	"github.com/maestro-platform/deploy/internal/interrupt"
	"github.com/maestro-platform/deploy/internal/testenv"
	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/release"
	"github.com/maestro-platform/deploy/tasks/ui"
)

// TestHelperPromote is not a test: the interrupt tests run this binary as
// a promote or rollback process to stop at a crash point and kill.
func TestHelperPromote(t *testing.T) {
	file := os.Getenv("MAESTRO_TEST_PROMOTE")
	if file == "" {
		t.Skip("a helper process of the interrupt tests")
	}
	cat, err := catalog.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if v := os.Getenv("MAESTRO_TEST_NOTE"); v != "" {
		qf, _ := cat.Service("quality-fabric")
		qf.Env["RELEASE_NOTE"] = v
	}
	at, _ := time.Parse(time.RFC3339, os.Getenv("MAESTRO_TEST_NOW"))
	o := release.Options{Env: "e2e", Force: true, LocalDeployDir: os.Getenv("MAESTRO_TEST_DEPLOY"),
		Printer: ui.Plain(os.Stdout), Now: func() time.Time { return at }}
	ctx := context.Background()
	if os.Getenv("MAESTRO_TEST_SIGNALS") != "" {
		// Ctrl-C as the promote and rollback targets receive it.
		var stop func()
		ctx, stop = interrupt.Context(ctx, func() { fmt.Println("interrupt: Ctrl-C") })
		defer stop()
	}
	switch os.Getenv("MAESTRO_TEST_ACTION") {
	case "rollback":
		err = release.Rollback(ctx, cat, o)
	default:
		_, err = release.Promote(ctx, cat, o)
	}
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
}

// interruptRelease runs a promote (or rollback) of the catalog as another
// process, stops it at point, optionally cuts its ssh connection from the
// host's side, then sends it sig and waits for it to end.
func (f *fixture) interruptRelease(t *testing.T, action, point, note string, cut bool, sig syscall.Signal) string {
	t.Helper()
	f.clock = f.clock.Add(time.Minute)
	c := exec.Command(os.Args[0], "-test.run=^TestHelperPromote$")
	c.Env = append(os.Environ(), "MAESTRO_TEST_PROMOTE="+f.cat.File, "MAESTRO_TEST_DEPLOY="+f.deploy,
		"MAESTRO_TEST_ACTION="+action, "MAESTRO_TEST_NOTE="+note, "MAESTRO_TEST_NOW="+f.clock.Format(time.RFC3339),
		crashpoint.Env+"="+point)
	var out bytes.Buffer
	c.Stdout = &out
	stderr, err := c.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	reached := false
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if sc.Text() == "crashpoint: "+point {
			reached = true
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, stderr) }()
	if reached {
		if cut {
			f.cutSSH(t)
		}
		_ = c.Process.Signal(sig)
	}
	_ = c.Wait()
	if !reached {
		t.Fatalf("%s never reached %s:\n%s", action, point, out.String())
	}
	return out.String()
}

// cutSSH ends every ssh session on the host, from the host's side, as a
// dropped link or a rebooting router would: sshd's session processes die,
// the listener stays.
func (f *fixture) cutSSH(t *testing.T) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "pids", f.r.Namespace).Output()
	if err != nil {
		t.Fatal(err)
	}
	listener, _ := os.ReadFile(filepath.Join(f.r.Root, "sshd.pid"))
	cut := 0
	for _, pid := range strings.Fields(string(out)) {
		cmdline, _ := os.ReadFile(filepath.Join("/proc", pid, "cmdline"))
		// Session processes only: the listener (whose title may start
		// with "sshd: " too) keeps listening.
		if strings.HasPrefix(string(cmdline), "sshd: ") && pid != strings.TrimSpace(string(listener)) &&
			!strings.Contains(string(cmdline), "[listener]") {
			var n int
			fmt.Sscan(pid, &n)
			if syscall.Kill(n, syscall.SIGKILL) == nil {
				cut++
			}
		}
	}
	if cut == 0 {
		t.Fatalf("no ssh session to cut on the host")
	}
}

// Interrupt a promote, and a rollback, at each of their steps, with SIGINT
// and SIGKILL, and with the ssh connection cut from the host's side: under
// load, the host never fails a request, current moves only once activation
// completed, and the next promote or rollback completes with nothing done
// by hand (taking the dead one's lock over).
func (f *fixture) interrupts(ctx context.Context, t *testing.T) {
	type cell struct {
		action, point string
		cut           bool
		sig           syscall.Signal
	}
	var cells []cell
	for _, point := range []string{"promote:locked", "promote:transferred", "promote:uploaded", "apply:started",
		"apply:healthy", "apply:switched", "promote:applied", "promote:checked", "promote:activated"} {
		cells = append(cells, cell{"promote", point, false, syscall.SIGINT}, cell{"promote", point, false, syscall.SIGKILL})
	}
	// A rollback runs the same apply as a promote (apply:started,
	// apply:healthy, apply:switched), whose interrupts the cells above
	// cover: here only the rollback's own points, and one ssh cut in its
	// apply below.
	for _, point := range []string{"rollback:locked", "rollback:checked"} {
		cells = append(cells, cell{"rollback", point, false, syscall.SIGINT}, cell{"rollback", point, false, syscall.SIGKILL})
	}
	cells = append(cells, cell{"promote", "apply:started", true, syscall.SIGINT}, cell{"promote", "promote:checked", true, syscall.SIGINT},
		cell{"rollback", "apply:healthy", true, syscall.SIGINT})
	sigName := map[syscall.Signal]string{syscall.SIGINT: "SIGINT", syscall.SIGKILL: "SIGKILL"}
	qf, _ := f.cat.Service("quality-fabric")
	defer delete(qf.Env, "RELEASE_NOTE")
	for i, c := range cells {
		name := fmt.Sprintf("%s at %s by %s", c.action, c.point, sigName[c.sig])
		if c.cut {
			name = fmt.Sprintf("%s at %s, ssh cut by the host, then SIGINT", c.action, c.point)
		}
		t.Run(name, func(t *testing.T) {
			note := fmt.Sprintf("interrupt-%d", i)
			if c.action == "rollback" {
				// A release to roll back from.
				o := f.opts("e2e")
				o.Force = true
				qf, _ := f.cat.Service("quality-fabric")
				qf.Env["RELEASE_NOTE"] = note + "-before"
				if _, err := release.Promote(ctx, f.cat, o); err != nil {
					t.Fatalf("promote before the rollback: %v\n%s", err, f.out.String())
				}
			}
			before := f.current()
			var out string
			st := f.load(t, f.published(), func() {
				out = f.interruptRelease(t, c.action, c.point, note, c.cut, c.sig)
				moved := f.current() != before
				if moved != (c.point == "promote:activated") {
					t.Errorf("current %s -> %s after an interrupt at %s", before, f.current(), c.point)
				}
				// The next run completes by itself.
				o := f.opts("e2e")
				o.Force = true
				var err error
				if c.action == "rollback" {
					if f.current() == before {
						err = release.Rollback(ctx, f.cat, o)
					}
				} else {
					qf, _ := f.cat.Service("quality-fabric")
					qf.Env["RELEASE_NOTE"] = note
					_, err = release.Promote(ctx, f.cat, o)
				}
				if err != nil {
					t.Fatalf("the run after the interrupt: %v\n%s\ninterrupted run:\n%s", err, f.out.String(), out)
				}
			})
			testenv.NoFailures(t, "interrupt and rerun", st)
			// A release the interrupted promote uploaded but never made
			// live is not left for a rollback to take: the rerun's prune
			// removed it.
			ids, _ := os.ReadDir(filepath.Join(f.r.Dir, "releases"))
			for _, id := range ids {
				if _, err := os.Stat(filepath.Join(f.r.Dir, ".live", id.Name())); err != nil {
					t.Errorf("release %s on the host never went live, and is still there", id.Name())
				}
			}
			if run := f.running(ctx, t); len(run["quality-fabric"]) != 1 || len(run["template-service"]) != 1 || len(run["state-store"]) != 1 {
				t.Errorf("after the rerun: containers %v, want one of each service", run)
			}
		})
	}
}
