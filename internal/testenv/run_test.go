package testenv

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// What a killed run left is removed by the next run's sweep; what a live
// run owns is not, nor anything without a run id in its name.
func TestSweepRemovesOnlyDeadRuns(t *testing.T) {
	RequireDocker(t)
	RequireCommand(t, "flock")
	if os.Geteuid() != 0 {
		if InCI() {
			t.Fatal("the sweep test needs root (network namespaces)")
		}
		t.Skip("needs root")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sh := func(args ...string) {
		t.Helper()
		if out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
	}

	// A live run: a lock held by another process, as another package's
	// test binary holds its own. The dead run is alive too while its
	// objects are made (every package's test binary sweeps when it
	// starts, and would take them half-made), and dies before the sweep.
	dead, live := "dead0000", "11fe0000"
	hold := func(id string) (kill func()) {
		holder := exec.Command("flock", "-x", filepath.Join(RunsDir, id+".lock"), "sleep", "120")
		holder.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := holder.Start(); err != nil {
			t.Fatal(err)
		}
		for !alive(id) {
			time.Sleep(10 * time.Millisecond)
		}
		var once sync.Once
		kill = func() {
			once.Do(func() {
				// sleep inherited the locked descriptor: end the whole group.
				_ = syscall.Kill(-holder.Process.Pid, syscall.SIGKILL)
				_ = holder.Wait()
			})
		}
		t.Cleanup(kill)
		return kill
	}
	killLive := hold(live)
	t.Cleanup(func() {
		killLive()
		Sweep() // the live run's objects, now dead
	})
	killDead := hold(dead)

	img := t.TempDir()
	if err := os.WriteFile(filepath.Join(img, "Dockerfile"), []byte("FROM scratch\nLABEL maestro-sweep-test=1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	objects := func(id string) []string {
		p := "sweep-t" + id + "x01"
		sh("docker", "build", "-q", "-t", p+"/img:1", img)
		sh("docker", "network", "create", p+"_platform")
		sh("docker", "volume", "create", p+"_data")
		sh("docker", "create", "--name", p+"-svc-1", "--network", p+"_platform", "-v", p+"_data:/data", p+"/img:1", "/x")
		sh("ip", "netns", "add", "mt"+id+"01")
		sh("ip", "link", "add", "mt"+id+"01h", "type", "veth", "peer", "name", "mt"+id+"01n")
		sh("ip", "link", "set", "mt"+id+"01n", "netns", "mt"+id+"01")
		root := "/tmp/mt-" + id + "-01-x"
		if err := os.MkdirAll(filepath.Join(root, "data"), 0o755); err != nil {
			t.Fatal(err)
		}
		// A swarm's bridge and the DOCKER-USER rule that lets it forward.
		br := "mt" + id + "02b"
		sh("ip", "link", "add", br, "type", "bridge")
		rule := "-A DOCKER-USER -i " + br + " -o " + br + " -m comment --comment maestro-test-t" + id + "x -j ACCEPT"
		sh(append([]string{"iptables"}, strings.Fields(strings.Replace(rule, "-A", "-I", 1))...)...)
		return []string{"image " + p + "/img:1", "network " + p + "_platform", "volume " + p + "_data",
			"container " + p + "-svc-1", "netns mt" + id + "01", "link mt" + id + "01h", "folder " + root,
			"link " + br, "iptables " + rule}
	}
	// Nothing of a name without a run id goes, however it looks.
	other := "sweep-nomarker-" + RunID(t)
	sh("docker", "network", "create", other)
	t.Cleanup(func() { _ = exec.Command("docker", "network", "rm", other).Run() })

	// Whether an object is still there. Asked of the engine and the
	// kernel, not of Sweep's report: every package's test binary sweeps
	// when it starts, so under go test ./... another one may remove a dead
	// run's object first.
	exists := func(w string) error {
		kind, name, _ := strings.Cut(w, " ")
		var err error
		switch kind {
		case "image", "network", "volume", "container":
			err = exec.Command("docker", kind, "inspect", name).Run()
		case "netns":
			_, err = os.Stat("/run/netns/" + name)
		case "link":
			err = exec.Command("ip", "link", "show", name).Run()
		case "folder":
			_, err = os.Stat(name)
		case "iptables":
			var out []byte
			if out, err = exec.Command("iptables", "-S").Output(); err == nil && !strings.Contains(string(out), name) {
				err = os.ErrNotExist
			}
		default:
			t.Fatalf("unknown kind of object %q", w)
		}
		return err
	}

	wantGone := objects(dead)
	wantKept := objects(live)
	killDead()
	// The lock goes with the last process holding it (sleep, after flock).
	for end := time.Now().Add(time.Minute); alive(dead); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("the dead run's lock is still held a minute after its holders were killed")
		}
	}
	removed := Sweep()
	for _, w := range wantGone {
		if exists(w) == nil {
			t.Errorf("sweep did not remove the dead run's %s (removed %q)", w, removed)
		}
	}
	for _, r := range removed {
		if strings.Contains(r, live) || strings.Contains(r, other) {
			t.Errorf("sweep removed %s, which belongs to a live run or to nobody", r)
		}
	}
	for _, w := range wantKept {
		if err := exists(w); err != nil {
			t.Errorf("the live run's %s is gone: %v", w, err)
		}
	}
	if _, err := os.Stat(filepath.Join(RunsDir, dead+".lock")); !os.IsNotExist(err) {
		t.Errorf("the dead run's lock file is still there (%v)", err)
	}
	if err := exec.Command("docker", "network", "inspect", other).Run(); err != nil {
		t.Errorf("network %s without a run id was removed", other)
	}
}
