package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// A test binary is one run. Every Docker object, network namespace and
// folder the tests create carries the run's id in its name, and the run
// holds an exclusive flock on RunsDir/<id>.lock for as long as it lives.
// The kernel drops that lock when the process dies, however it dies
// (SIGKILL included), so a later run tells the leftovers of a dead run
// from those of a live one by trying the lock, and removes them before it
// creates anything of its own.

// RunsDir holds one lock file per live test run. It is on /run so that a
// reboot, which kills every run, also forgets them: objects named for a
// run without a lock file are leftovers too.
const RunsDir = "/run/maestro-test-runs"

// runMarker is how a run id appears inside names: "-t" + 8 hex digits +
// "x", e.g. project "stk-t1a2b3c4dx9f8e" or namespace "mt1a2b3c4d07".
var (
	runInName = regexp.MustCompile(`-t([0-9a-f]{8})x[0-9a-f]+`)
	runInNS   = regexp.MustCompile(`^mt([0-9a-f]{8})[0-9]{2}$`)
	runInLink = regexp.MustCompile(`^mt([0-9a-f]{8})[0-9]{2}[a-z]$`)
	runInRoot = regexp.MustCompile(`^mt-([0-9a-f]{8})-`)
)

var (
	runOnce sync.Once
	runID   string
	runErr  error
	runLock *os.File
)

// RunID is this test binary's run id (8 hex digits). The first call takes
// the run's lock and removes what dead runs left behind.
func RunID(t testing.TB) string {
	t.Helper()
	id, err := startRun()
	if err != nil {
		t.Fatalf("test run lock in %s: %v", RunsDir, err)
	}
	return id
}

// Name returns a name unique to this run and call, carrying the run id
// like ProjectName, for code that has no testing.TB (examples).
func Name(prefix string) (string, error) {
	id, err := startRun()
	if err != nil {
		return "", fmt.Errorf("test run lock in %s: %w", RunsDir, err)
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return prefix + "-t" + id + "x" + hex.EncodeToString(b), nil
}

func startRun() (string, error) {
	runOnce.Do(func() {
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		runID = hex.EncodeToString(b)
		if runErr = os.MkdirAll(RunsDir, 0o755); runErr != nil {
			return
		}
		runLock, runErr = os.OpenFile(filepath.Join(RunsDir, runID+".lock"), os.O_CREATE|os.O_RDWR, 0o644)
		if runErr != nil {
			return
		}
		if runErr = syscall.Flock(int(runLock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); runErr != nil {
			return
		}
		fmt.Fprintf(runLock, "pid %d\n", os.Getpid())
		Sweep()
	})
	return runID, runErr
}

// alive reports whether the run with that id still holds its lock.
func alive(id string) bool {
	if id == runID {
		return true
	}
	f, err := os.OpenFile(filepath.Join(RunsDir, id+".lock"), os.O_RDWR, 0)
	if err != nil {
		return false // no lock file: the run is gone (or the machine rebooted)
	}
	defer f.Close()
	if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		return true
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}

// Sweep removes everything that runs which are no longer alive left: their
// containers, networks, volumes and images on the main engine, their
// second hosts (sshd and dockerd by pid file, mounts, network namespaces,
// veths, iptables rules and folders), then their lock files. It returns
// what it removed. It never touches an object whose name carries no run
// id, nor one of a live run.
func Sweep() []string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var removed []string
	dead := map[string]bool{}
	isDead := func(id string) bool {
		d, ok := dead[id]
		if !ok {
			d = !alive(id)
			dead[id] = d
		}
		return d
	}
	deadIn := func(name string) bool {
		m := runInName.FindStringSubmatch(name)
		return m != nil && isDead(m[1])
	}

	// Second hosts first: their dockerd holds mounts under their folder.
	// Folders of the run's tests under /tmp (an agent's folder, say).
	tmps, _ := filepath.Glob("/tmp/*-t*x*")
	for _, d := range tmps {
		if deadIn(filepath.Base(d)) && !strings.HasPrefix(filepath.Base(d), "mt-") {
			unmountUnder(d)
			if os.RemoveAll(d) == nil {
				removed = append(removed, "folder "+d)
			}
		}
	}
	roots, _ := filepath.Glob("/tmp/mt-*")
	for _, root := range roots {
		m := runInRoot.FindStringSubmatch(filepath.Base(root))
		if m == nil || !isDead(m[1]) {
			continue
		}
		for _, pf := range []string{"sshd.pid", "dockerd.pid"} {
			stopPidFile(filepath.Join(root, pf), 10*time.Second)
		}
		unmountUnder(root)
		if os.RemoveAll(root) == nil {
			removed = append(removed, "folder "+root)
		}
	}
	if out, err := exec.CommandContext(ctx, "ip", "-o", "link", "show").Output(); err == nil {
		for _, l := range strings.Split(string(out), "\n") {
			f := strings.Fields(l)
			if len(f) < 2 {
				continue
			}
			name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
			if m := runInLink.FindStringSubmatch(name); m != nil && isDead(m[1]) {
				if run(ctx, "ip", "link", "del", name) == nil {
					removed = append(removed, "link "+name)
				}
			}
		}
	}
	if out, err := exec.CommandContext(ctx, "ip", "netns", "list").Output(); err == nil {
		for _, l := range strings.Split(string(out), "\n") {
			f := strings.Fields(l)
			if len(f) == 0 {
				continue
			}
			if m := runInNS.FindStringSubmatch(f[0]); m != nil && isDead(m[1]) {
				killInNS(f[0])
				if run(ctx, "ip", "netns", "del", f[0]) == nil {
					removed = append(removed, "netns "+f[0])
				}
			}
		}
	}
	removed = append(removed, sweepIptables(ctx, isDead)...)

	// The main engine: containers, then what they used.
	docker := func(args ...string) []string {
		out, err := exec.CommandContext(ctx, "docker", args...).Output()
		if err != nil {
			return nil
		}
		return strings.Fields(string(out))
	}
	if _, err := exec.LookPath("docker"); err == nil {
		rm := func(kind string, names []string, args ...string) {
			for _, n := range names {
				if deadIn(n) && exec.CommandContext(ctx, "docker", append(args, n)...).Run() == nil {
					removed = append(removed, kind+" "+n)
				}
			}
		}
		// Containers by name or by compose project: compose v1 names
		// them project_service_1, and the probe server's name is the
		// project's too.
		out, _ := exec.CommandContext(ctx, "docker", "ps", "-a", "--format",
			`{{.ID}} {{.Names}} {{.Labels}}`).Output()
		for _, l := range strings.Split(string(out), "\n") {
			f := strings.Fields(l)
			// By name, or by a label holding a name of the run (a compose
			// project, an agent's folder).
			if len(f) < 2 || !(deadIn(f[1]) || len(f) > 2 && deadIn(strings.Join(f[2:], " "))) {
				continue
			}
			if exec.CommandContext(ctx, "docker", "rm", "-f", "-v", f[0]).Run() == nil {
				removed = append(removed, "container "+f[1])
			}
		}
		rm("network", docker("network", "ls", "--format", "{{.Name}}"), "network", "rm")
		rm("volume", docker("volume", "ls", "--format", "{{.Name}}"), "volume", "rm", "-f")
		var refs []string
		for _, r := range docker("images", "--format", "{{.Repository}}:{{.Tag}}") {
			if !strings.HasSuffix(r, ":<none>") {
				refs = append(refs, r)
			}
		}
		rm("image", refs, "rmi", "-f")
	}

	// Last, the lock files of the dead runs: they were what made the
	// objects above recognisable as dead.
	locks, _ := filepath.Glob(filepath.Join(RunsDir, "*.lock"))
	for _, l := range locks {
		id := strings.TrimSuffix(filepath.Base(l), ".lock")
		if isDead(id) {
			_ = os.Remove(l)
		}
	}
	return removed
}

// killInNS ends what still runs in a dead run's network namespace (its
// dockerd, sshd and their children), so that the namespace can go.
func killInNS(ns string) {
	out, err := exec.Command("ip", "netns", "pids", ns).Output()
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// iptablesComment marks the rules a run adds, e.g. the DOCKER-USER rule
// that lets a multi-node test bridge forward: "maestro-test-t<id>x".
func iptablesComment(id string) string { return "maestro-test-t" + id + "x" }

var ruleComment = regexp.MustCompile(`--comment "?maestro-test-t([0-9a-f]{8})x"?`)

// sweepIptables deletes the filter rules dead runs added.
func sweepIptables(ctx context.Context, isDead func(string) bool) []string {
	out, err := exec.CommandContext(ctx, "iptables", "-S").Output()
	if err != nil {
		return nil
	}
	var removed []string
	for _, l := range strings.Split(string(out), "\n") {
		m := ruleComment.FindStringSubmatch(l)
		if m == nil || !isDead(m[1]) || !strings.HasPrefix(l, "-A ") {
			continue
		}
		args := strings.Fields(strings.Replace(l, "-A ", "-D ", 1))
		for i, a := range args {
			args[i] = strings.Trim(a, `"`)
		}
		if err := exec.CommandContext(ctx, "iptables", args...).Run(); err == nil {
			removed = append(removed, "iptables "+l)
		}
	}
	return removed
}
