package testenv

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Swarm is a multi-node Docker swarm on this machine: n engines, each with
// its sshd in a network namespace of its own like a Remote, their veths on
// one host bridge, so that the nodes reach each other (swarm's control
// plane on 2377, gossip on 7946, the overlay's vxlan on 4789) and this
// machine reaches every node's sshd and published ports.
//
// The host's FORWARD policy is DROP and bridged frames pass iptables here,
// so the bridge forwards only thanks to one rule in DOCKER-USER, carrying
// the run's comment (iptablesComment). Everything is named for the run
// (Sweep removes a dead run's namespaces, veths, bridge, rule and folders)
// and removed by t.Cleanup: nodes, bridge, rule, folders.
type Swarm struct {
	// Nodes are the engines: Nodes[0] is the manager (the swarm was
	// initialised there), the others are workers.
	Nodes []*Remote
	// Bridge is the host bridge every node's veth is attached to.
	Bridge string
	// Subnet is the nodes' network (the bridge holds its first address).
	Subnet string
	// KnownHosts holds the host key of every node.
	KnownHosts string
	// Identity is the private key every node's sshd accepts for root.
	Identity string
	// Root holds the shared files (identity, known_hosts).
	Root string
	// AddrPool is the swarm's --default-addr-pool (its overlay networks).
	AddrPool string

	t     testing.TB
	hosts []*remoteHost
	rule  []string // the DOCKER-USER rule, as added (-I ...)
	// bridge is true once the bridge exists.
	bridge bool
	// mu guards engine stops and starts.
	mu sync.Mutex
}

// SwarmAddrPool is where the test swarms' overlay networks take their
// subnets: outside 10.201.0.0/16 (second hosts) and 10.207.0.0/16 (swarm
// bridges), and inside the nodes' namespaces only.
const SwarmAddrPool = "10.205.0.0/16"

// Manager is the node the swarm was initialised on.
func (s *Swarm) Manager() *Remote { return s.Nodes[0] }

// Workers are the other nodes.
func (s *Swarm) Workers() []*Remote { return s.Nodes[1:] }

// Addrs are the nodes' addresses, for a load generator's Hosts.
func (s *Swarm) Addrs() []string {
	out := make([]string, len(s.Nodes))
	for i, n := range s.Nodes {
		out[i] = n.Addr
	}
	return out
}

// SSHFlags reach any node with its key checked against KnownHosts.
func (s *Swarm) SSHFlags() []string {
	return []string{"-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=" + s.KnownHosts,
		"-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i", s.Identity}
}

// StartSwarm starts n engines (n >= 1) as one swarm: node 0 runs `docker
// swarm init`, the others join it as workers, every node advertising its
// bridge address; it returns once the manager lists n ready nodes.
// t.Cleanup takes it all down: each node's sshd and dockerd by pid file,
// mounts, namespaces and veths, then the DOCKER-USER rule and the bridge,
// then the folders. Under CI a missing dockerd, sshd, ssh, ssh-keygen, ip,
// nsenter, unshare or iptables fails the test; elsewhere it skips, as does
// not being root.
func StartSwarm(t testing.TB, n int) *Swarm {
	t.Helper()
	for _, c := range []string{"dockerd", "docker", "sshd", "ssh", "ssh-keygen", "ip", "nsenter", "unshare", "iptables"} {
		RequireCommand(t, c)
	}
	if os.Geteuid() != 0 {
		if InCI() {
			t.Fatal("StartSwarm needs root (network namespaces, a bridge, iptables, dockerd)")
		}
		t.Skip("StartSwarm needs root")
	}
	if n < 1 || n > 12 {
		t.Fatalf("StartSwarm: %d nodes, want 1-12", n)
	}
	seq := remoteSeq.Add(1)
	root, err := os.MkdirTemp("/tmp", fmt.Sprintf("mt-%s-%02d-", RunID(t), seq%100))
	if err != nil {
		t.Fatalf("swarm: %v", err)
	}
	s := &Swarm{t: t, Root: root, AddrPool: SwarmAddrPool,
		Bridge: fmt.Sprintf("mt%s%02db", runID, seq%100)}
	t.Cleanup(s.stop)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	t0 := time.Now()
	if err := s.start(ctx, int(seq%100), n); err != nil {
		t.Fatalf("swarm: %v", err)
	}
	t.Logf("swarm of %d nodes on bridge %s (%s) up in %s", n, s.Bridge, s.Subnet, time.Since(t0).Round(100*time.Millisecond))
	return s
}

func (s *Swarm) start(ctx context.Context, seq, n int) error {
	base, err := s.network(ctx, seq)
	if err != nil {
		return err
	}
	s.Identity = filepath.Join(s.Root, "id_ed25519")
	if err := run(ctx, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "maestro-test", "-f", s.Identity); err != nil {
		return err
	}
	for i := range n {
		nseq := int(remoteSeq.Add(1) % 100)
		root, err := os.MkdirTemp("/tmp", fmt.Sprintf("mt-%s-%02d-", runID, nseq))
		if err != nil {
			return err
		}
		r := &Remote{Root: root, Dir: filepath.Join(root, "deploy"), SSHPort: 2222, Identity: s.Identity,
			Socket: "unix://" + filepath.Join(root, "docker.sock")}
		ns := fmt.Sprintf("mt%s%02d", runID, nseq)
		h := &remoteHost{Remote: r, t: s.t, seq: nseq, hostname: ns}
		r.h = h
		s.hosts = append(s.hosts, h)
		s.Nodes = append(s.Nodes, r)
		if err := os.MkdirAll(r.Dir, 0o755); err != nil {
			return err
		}
		if err := s.attach(ctx, h, ns, base+2+i); err != nil {
			return err
		}
	}
	// The engines start in parallel: each takes a few seconds.
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, h := range s.hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := h.dockerd(ctx); err != nil {
				errs[i] = fmt.Errorf("node %d: %w", i, err)
				return
			}
			if err := h.sshd(ctx); err != nil {
				errs[i] = fmt.Errorf("node %d: %w", i, err)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	var kh bytes.Buffer
	for _, r := range s.Nodes {
		b, err := os.ReadFile(r.KnownHosts)
		if err != nil {
			return err
		}
		kh.Write(b)
	}
	s.KnownHosts = filepath.Join(s.Root, "known_hosts")
	if err := os.WriteFile(s.KnownHosts, kh.Bytes(), 0o600); err != nil {
		return err
	}
	return s.form(ctx)
}

// network makes the bridge with a /28 of 10.207.0.0/16 that no interface
// of this machine uses yet, and the DOCKER-USER rule that lets it forward
// between its ports. It returns the subnet's first address as a number
// (its last octet).
func (s *Swarm) network(ctx context.Context, seq int) (int, error) {
	var used []*net.IPNet
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				used = append(used, n)
			}
		}
	}
	start := (os.Getpid()*7 + seq*13) % 4096
	for try := 0; try < 64; try++ {
		i := (start + try) % 4096
		third, fourth := byte(i/16), byte(i%16*16)
		_, subnet, _ := net.ParseCIDR(fmt.Sprintf("10.207.%d.%d/28", third, fourth))
		clash := false
		for _, u := range used {
			if subnet.Contains(u.IP) || u.Contains(subnet.IP) {
				clash = true
			}
		}
		if clash {
			continue
		}
		gw := fmt.Sprintf("10.207.%d.%d", third, fourth+1)
		if err := run(ctx, "ip", "link", "add", s.Bridge, "type", "bridge"); err != nil {
			return 0, err
		}
		s.bridge = true
		for _, args := range [][]string{{"addr", "add", gw + "/28", "dev", s.Bridge}, {"link", "set", s.Bridge, "up"}} {
			if err := run(ctx, "ip", args...); err != nil {
				return 0, err
			}
		}
		s.Subnet = subnet.String()
		rule := []string{"DOCKER-USER", "-i", s.Bridge, "-o", s.Bridge, "-m", "comment", "--comment", iptablesComment(runID), "-j", "ACCEPT"}
		if err := run(ctx, "iptables", append([]string{"-I"}, rule...)...); err != nil {
			return 0, fmt.Errorf("let the bridge forward (the host's FORWARD policy is DROP): %w", err)
		}
		s.rule = rule
		return int(fourth), nil
	}
	return 0, fmt.Errorf("no free /28 in 10.207.0.0/16")
}

// attach makes node h's namespace and its veth, the host end on the bridge.
func (s *Swarm) attach(ctx context.Context, h *remoteHost, ns string, last int) error {
	ip := strings.TrimSuffix(s.Subnet, "/28")
	ip = ip[:strings.LastIndexByte(ip, '.')+1] + fmt.Sprint(last)
	if err := h.plug(ctx, ns, ip+"/28", func(hv string) error {
		return run(ctx, "ip", "link", "set", hv, "master", s.Bridge)
	}); err != nil {
		return err
	}
	h.Addr = ip
	return nil
}

// docker runs the docker CLI against node i's engine and returns its
// trimmed output.
func (s *Swarm) docker(ctx context.Context, i int, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "docker", append([]string{"-H", s.Nodes[i].Socket}, args...)...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("docker %s on node %d: %w: %s", strings.Join(args, " "), i, err, bytes.TrimSpace(out))
	}
	return strings.TrimSpace(string(out)), nil
}

// form initialises the swarm on node 0 and joins the others to it.
func (s *Swarm) form(ctx context.Context) error {
	m := s.Manager()
	if _, err := s.docker(ctx, 0, "swarm", "init", "--advertise-addr", m.Addr, "--listen-addr", m.Addr+":2377",
		"--default-addr-pool", s.AddrPool); err != nil {
		return err
	}
	token, err := s.docker(ctx, 0, "swarm", "join-token", "-q", "worker")
	if err != nil {
		return err
	}
	for i := 1; i < len(s.Nodes); i++ {
		w := s.Nodes[i]
		if _, err := s.docker(ctx, i, "swarm", "join", "--token", token, "--advertise-addr", w.Addr,
			"--listen-addr", w.Addr+":2377", m.Addr+":2377"); err != nil {
			return err
		}
	}
	return s.waitReady(ctx, len(s.Nodes))
}

// waitReady waits until the manager lists want nodes as ready.
func (s *Swarm) waitReady(ctx context.Context, want int) error {
	for {
		out, err := s.docker(ctx, 0, "node", "ls", "--format", "{{.Status}}")
		if err == nil && strings.Count(out, "Ready") == want {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the manager does not list %d ready nodes: %q %v", want, out, err)
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// NodeID returns the swarm node ID of node i.
func (s *Swarm) NodeID(t testing.TB, i int) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id, err := s.docker(ctx, i, "info", "--format", "{{.Swarm.NodeID}}")
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// StopEngine stops node i's dockerd as an operator would (SIGTERM by pid
// file: its containers are stopped, it leaves no swarm), and returns when
// it has exited. Its sshd and namespace stay: the machine is up, its
// engine is not.
func (s *Swarm) StopEngine(t testing.TB, i int) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.hosts[i].stopEngine(); err != nil {
		t.Fatalf("node %d: %v", i, err)
	}
}

// StartEngine starts node i's dockerd again, on the same data: it rejoins
// the swarm by itself. It returns once the engine answers (not once the
// manager lists the node as ready: see WaitReady).
func (s *Swarm) StartEngine(t testing.TB, i int) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := s.hosts[i].dockerd(ctx); err != nil {
		t.Fatalf("restart node %d's engine: %v", i, err)
	}
}

// WaitReady waits until the manager lists every node as ready.
func (s *Swarm) WaitReady(t testing.TB, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := s.waitReady(ctx, len(s.Nodes)); err != nil {
		t.Fatal(err)
	}
}

// stop takes everything down, nodes first (their veths hang on the
// bridge), then the rule and the bridge, then the folders.
func (s *Swarm) stop() {
	var wg sync.WaitGroup
	for _, h := range s.hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.stop()
		}()
	}
	wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if s.rule != nil {
		if err := run(ctx, "iptables", append([]string{"-D"}, s.rule...)...); err != nil {
			s.t.Logf("swarm cleanup: %v", err)
		}
	}
	if s.bridge {
		if err := run(ctx, "ip", "link", "del", s.Bridge); err != nil {
			s.t.Logf("swarm cleanup: %v", err)
		}
	}
	if err := os.RemoveAll(s.Root); err != nil {
		s.t.Logf("swarm cleanup: %v", err)
	}
}
