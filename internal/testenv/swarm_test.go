package testenv_test

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/maestro-platform/deploy/internal/testenv"
)

// TestStartSwarm proves a two-node swarm forms over the bridge, that each
// node is reached over ssh with the shared key and known_hosts, that a
// stopped engine comes back into the swarm, and that nothing of it is left
// afterwards: no namespace, link, iptables rule or folder.
func TestStartSwarm(t *testing.T) {
	testenv.RequireDocker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var s *testenv.Swarm
	var names []string
	t.Run("up", func(t *testing.T) {
		s = testenv.StartSwarm(t, 2)
		names = append(names, s.Bridge)
		for _, n := range s.Nodes {
			names = append(names, n.Namespace)
		}
		rules, err := exec.CommandContext(ctx, "iptables", "-S", "DOCKER-USER").CombinedOutput()
		if err != nil || !strings.Contains(string(rules), "-i "+s.Bridge+" -o "+s.Bridge) ||
			!strings.Contains(string(rules), "maestro-test-t"+testenv.RunID(t)+"x") {
			t.Fatalf("no DOCKER-USER rule for %s with the run's comment: %v\n%s", s.Bridge, err, rules)
		}
		out, err := exec.CommandContext(ctx, "docker", "-H", s.Manager().Socket, "node", "ls",
			"--format", "{{.Hostname}} {{.Status}} {{.ManagerStatus}}").CombinedOutput()
		if err != nil {
			t.Fatalf("node ls: %v: %s", err, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		var hosts []string
		for _, l := range lines {
			f := strings.Fields(l)
			if len(f) < 2 || f[1] != "Ready" {
				t.Errorf("node %q is not ready", l)
				continue
			}
			hosts = append(hosts, f[0])
		}
		slices.Sort(hosts)
		want := []string{s.Nodes[0].Namespace, s.Nodes[1].Namespace}
		slices.Sort(want)
		if !slices.Equal(hosts, want) {
			t.Errorf("node host names %v, want %v (one per node)", hosts, want)
		}
		// Each node over ssh, with the one key and the one known_hosts.
		for i, n := range s.Nodes {
			args := append(s.SSHFlags(), "-p", "2222", "root@"+n.Addr, "docker", "info", "--format", "'{{.Swarm.NodeID}}'")
			out, err := exec.CommandContext(ctx, "ssh", args...).CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != s.NodeID(t, i) {
				t.Errorf("node %d over ssh: %v: %s, want its node ID", i, err, out)
			}
		}
		// A worker whose engine stops and starts again is back in the swarm.
		s.StopEngine(t, 1)
		s.StartEngine(t, 1)
		s.WaitReady(t, time.Minute)
	})
	if s == nil {
		return
	}
	if out, _ := exec.Command("ip", "netns", "list").CombinedOutput(); containsAny(string(out), names) {
		t.Errorf("a namespace of the swarm is left:\n%s", out)
	}
	if out, _ := exec.Command("ip", "-o", "link", "show").CombinedOutput(); containsAny(string(out), names) {
		t.Errorf("a link of the swarm is left:\n%s", out)
	}
	if out, _ := exec.Command("iptables", "-S").CombinedOutput(); strings.Contains(string(out), s.Bridge) {
		t.Errorf("the bridge's iptables rule is left:\n%s", out)
	}
	for _, dir := range append([]string{s.Root}, s.Nodes[0].Root, s.Nodes[1].Root) {
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("%s is left (%v)", dir, err)
		}
	}
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if sub != "" && strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
