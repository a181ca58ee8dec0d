package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Remote is a second Docker host on this machine, reached over SSH like a
// real demo server: its own dockerd (own images, containers, networks and
// iptables) and an sshd, both inside a network namespace of their own.
//
// The namespace is what makes it safe: a second dockerd sharing the host's
// network namespace rewrites the main engine's docker0 bridge and its
// iptables chains (seen here: it moved docker0's address, and with
// --bridge=none it deleted docker0), breaking every other test on the
// machine. Inside its own namespace it touches nothing of the main engine.
type Remote struct {
	// Host is the Docker host URL to deploy to: ssh://root@ADDR:PORT.
	Host string
	// Addr is the host's network address: its sshd listens there and the
	// ports its containers publish are reached there (not on 127.0.0.1,
	// which inside the namespace is the namespace's own loopback).
	Addr string
	// SSHPort is the port sshd listens on at Addr.
	SSHPort int
	// Socket is the engine's local endpoint (unix:///...), for tests that
	// look at the host directly.
	Socket string
	// KnownHosts holds the host's key as "[ADDR]:PORT ssh-ed25519 ...".
	KnownHosts string
	// Identity is the private key sshd accepts for root.
	Identity string
	// Dir is a deployment folder on the host.
	Dir string
	// Root is the folder holding everything of this host (removed at cleanup).
	Root string
	// Namespace is the network namespace the host lives in.
	Namespace string
	// Gateway is this machine's address on the host's link: what the host
	// and its containers reach this machine at.
	Gateway string

	h *remoteHost
}

// RemoteOptions change how StartRemoteWith starts a host.
type RemoteOptions struct {
	// DNS, when set, is called once the host's link is up, with this
	// machine's address on it (Remote.Gateway), and returns the name
	// servers the host's engine gives its containers (dockerd --dns):
	// the host's resolvers, for tests of what reaches them.
	DNS func(gateway string) ([]string, error)
	// SSHD are more sshd options (-o values), e.g.
	// "AllowStreamLocalForwarding=no" for a host that forwards no socket.
	SSHD []string
}

// SSHFlags are the ssh options that reach this host with its key checked:
// what an environment's known_hosts and identity settings turn into.
func (r *Remote) SSHFlags() []string {
	return []string{"-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=" + r.KnownHosts,
		"-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i", r.Identity}
}

// SSHChannels counts, by type, the channels clients have opened on this
// host's sshd so far ("session": a remote command or shell, each a process
// on the host; "direct-streamlocal@openssh.com": a connection to a unix
// socket forwarded with ssh -L), from its log. A test takes the difference
// of two counts around what it measures.
func (r *Remote) SSHChannels(t testing.TB) map[string]int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(r.Root, "sshd.log"))
	if err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	for _, l := range strings.Split(string(b), "\n") {
		if _, rest, ok := strings.Cut(l, "server_input_channel_open: ctype "); ok {
			n[strings.Fields(rest)[0]]++
		}
	}
	return n
}

var remoteSeq atomic.Int64

// StartRemote starts a second Docker host and returns it; t.Cleanup stops
// its sshd and dockerd by their pid files, removes the namespace and every
// file. Under CI a missing dockerd, sshd, ssh, ssh-keygen, ip or nsenter
// fails the test; elsewhere it skips, as does not being root.
func StartRemote(t testing.TB) *Remote {
	t.Helper()
	return StartRemoteWith(t, RemoteOptions{})
}

// StartRemoteWith is StartRemote with options.
func StartRemoteWith(t testing.TB, opts RemoteOptions) *Remote {
	t.Helper()
	for _, c := range []string{"dockerd", "sshd", "ssh", "ssh-keygen", "ip", "nsenter"} {
		RequireCommand(t, c)
	}
	if os.Geteuid() != 0 {
		if InCI() {
			t.Fatal("StartRemote needs root (network namespace, dockerd)")
		}
		t.Skip("StartRemote needs root")
	}
	seq := remoteSeq.Add(1)
	root, err := os.MkdirTemp("/tmp", fmt.Sprintf("mt-%s-%02d-", RunID(t), seq%100))
	if err != nil {
		t.Fatalf("remote host: %v", err)
	}
	r := &Remote{Root: root, Dir: filepath.Join(root, "deploy"), SSHPort: 2222,
		Socket: "unix://" + filepath.Join(root, "docker.sock")}
	h := &remoteHost{Remote: r, t: t, seq: int(seq % 100), opts: opts}
	r.h = h
	t.Cleanup(h.stop)
	if err := h.start(); err != nil {
		t.Fatalf("remote host: %v", err)
	}
	return r
}

type remoteHost struct {
	*Remote
	t        testing.TB
	seq      int
	hostVeth string
	// hostname, when set, is the engine's host name, in a UTS namespace
	// of its own: swarm nodes tell themselves apart by it (see swarm.go).
	hostname string
	opts     RemoteOptions
	extra    []string // more dockerd flags
}

func run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

func (h *remoteHost) start() error {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := os.MkdirAll(h.Dir, 0o755); err != nil {
		return err
	}
	if err := h.network(ctx); err != nil {
		return err
	}
	if h.opts.DNS != nil {
		servers, err := h.opts.DNS(h.Gateway)
		if err != nil {
			return fmt.Errorf("name servers: %w", err)
		}
		for _, s := range servers {
			h.extra = append(h.extra, "--dns", s)
		}
	}
	if err := h.dockerd(ctx); err != nil {
		return err
	}
	return h.sshd(ctx)
}

// network makes the namespace and a veth pair with a /30 of 10.201.0.0/16
// that no interface of this machine uses yet.
func (h *remoteHost) network(ctx context.Context) error {
	used := map[string]bool{}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				used[n.IP.Mask(net.CIDRMask(30, 32)).String()] = true
			}
		}
	}
	base := int(uint64(os.Getpid())*7+uint64(h.seq)*13) % 16384
	for try := 0; try < 64; try++ {
		i := (base + try) % 16384
		subnet := net.IPv4(10, 201, byte(i/64), byte(i%64*4))
		if used[subnet.String()] {
			continue
		}
		// Named for the run (see Sweep): mt<run id><seq>, its veths with a
		// letter more (15 characters at most).
		ns := fmt.Sprintf("mt%s%02d", runID, h.seq)
		hostIP := net.IPv4(10, 201, byte(i/64), byte(i%64*4+1)).String()
		nsIP := net.IPv4(10, 201, byte(i/64), byte(i%64*4+2)).String()
		if err := h.plug(ctx, ns, nsIP+"/30", func(hv string) error {
			return run(ctx, "ip", "addr", "add", hostIP+"/30", "dev", hv)
		}); err != nil {
			return err
		}
		h.Addr, h.Gateway = nsIP, hostIP
		return nil
	}
	return fmt.Errorf("no free /30 in 10.201.0.0/16")
}

// plug makes the network namespace ns and a veth pair into it, named for
// it (<ns>h on this side, <ns>n inside), the inside end with address addr
// (CIDR); hostEnd sets up this side's end (an address, a bridge) before it
// comes up. Both are recorded on h, so that stop removes them.
func (h *remoteHost) plug(ctx context.Context, ns, addr string, hostEnd func(hv string) error) error {
	hv, nv := ns+"h", ns+"n"
	if err := run(ctx, "ip", "netns", "add", ns); err != nil {
		return err
	}
	h.Namespace = ns
	if err := run(ctx, "ip", "link", "add", hv, "type", "veth", "peer", "name", nv); err != nil {
		return err
	}
	h.hostVeth = hv
	in := func(args ...string) error { return run(ctx, "ip", append([]string{"-n", ns}, args...)...) }
	for _, step := range []func() error{
		func() error { return run(ctx, "ip", "link", "set", nv, "netns", ns) },
		func() error { return hostEnd(hv) },
		func() error { return run(ctx, "ip", "link", "set", hv, "up") },
		func() error { return in("addr", "add", addr, "dev", nv) },
		func() error { return in("link", "set", nv, "up") },
		func() error { return in("link", "set", "lo", "up") },
	} {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

// inNS runs a program in the host's network namespace only: `ip netns
// exec` would also remount /sys, hiding the cgroup mounts dockerd needs.
func (h *remoteHost) inNS(name string, args ...string) *exec.Cmd {
	return exec.Command("nsenter", append([]string{"--net=/run/netns/" + h.Namespace, name}, args...)...)
}

// daemonConfig keeps the main engine's settings that make a daemon work on
// this machine (storage driver, MTU, logging) and drops those that would
// clash with the flags that make this one separate.
func daemonConfig() []byte {
	cfg := map[string]any{}
	if b, err := os.ReadFile("/etc/docker/daemon.json"); err == nil {
		_ = json.Unmarshal(b, &cfg)
	}
	for _, k := range []string{"data-root", "graph", "exec-root", "pidfile", "hosts", "bip", "bridge",
		"default-address-pools", "fixed-cidr", "iptables", "ip-forward", "live-restore", "swarm-default-advertise-addr",
		"registry-mirrors", "insecure-registries", "containerd", "tls", "tlsverify", "tlscacert", "tlscert", "tlskey"} {
		delete(cfg, k)
	}
	b, _ := json.Marshal(cfg)
	return b
}

func (h *remoteHost) dockerd(ctx context.Context) error {
	cfg := filepath.Join(h.Root, "daemon.json")
	if err := os.WriteFile(cfg, daemonConfig(), 0o600); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(h.Root, "dockerd.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	sock := strings.TrimPrefix(h.Socket, "unix://")
	args := []string{"--config-file", cfg,
		"--data-root", filepath.Join(h.Root, "data"), "--exec-root", filepath.Join(h.Root, "exec"),
		"--pidfile", filepath.Join(h.Root, "dockerd.pid"), "-H", h.Socket,
		"--default-address-pool", "base=10.202.0.0/16,size=24"}
	args = append(args, h.extra...)
	cmd := h.inNS("dockerd", args...)
	if h.hostname != "" {
		// unshare and sh exec in turn: the pid file and Pdeathsig are dockerd's.
		cmd = h.inNS("unshare", append([]string{"--uts", "--", "sh", "-c", `hostname "$0" && exec dockerd "$@"`, h.hostname}, args...)...)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	// Pdeathsig: a test binary killed by its timeout takes the host with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start dockerd: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	for {
		if _, err := os.Stat(sock); err == nil {
			if run(ctx, "docker", "-H", h.Socket, "version", "--format", "{{.Server.Version}}") == nil {
				return nil
			}
		}
		select {
		case err := <-exited:
			return fmt.Errorf("dockerd exited: %v: %s", err, tail(filepath.Join(h.Root, "dockerd.log")))
		case <-ctx.Done():
			return fmt.Errorf("dockerd did not answer on %s: %s", h.Socket, tail(filepath.Join(h.Root, "dockerd.log")))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (h *remoteHost) sshd(ctx context.Context) error {
	hostKey := filepath.Join(h.Root, "ssh_host_ed25519_key")
	keys := []string{hostKey}
	if h.Identity == "" { // else a key shared by several hosts (a swarm's)
		h.Identity = filepath.Join(h.Root, "id_ed25519")
		keys = append(keys, h.Identity)
	}
	for _, k := range keys {
		if err := run(ctx, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "maestro-test", "-f", k); err != nil {
			return err
		}
	}
	pub, err := os.ReadFile(h.Identity + ".pub")
	if err != nil {
		return err
	}
	auth := filepath.Join(h.Root, "authorized_keys")
	if err := os.WriteFile(auth, pub, 0o600); err != nil {
		return err
	}
	hostPub, err := os.ReadFile(hostKey + ".pub")
	if err != nil {
		return err
	}
	f := strings.Fields(string(hostPub))
	h.KnownHosts = filepath.Join(h.Root, "known_hosts")
	line := fmt.Sprintf("[%s]:%d %s %s\n", h.Addr, h.SSHPort, f[0], f[1])
	if err := os.WriteFile(h.KnownHosts, []byte(line), 0o600); err != nil {
		return err
	}
	// sshd refuses to start without its privilege separation folder.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return err
	}
	logPath := filepath.Join(h.Root, "sshd.log")
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	sshd, _ := exec.LookPath("sshd") // sshd re-executes itself: it wants an absolute path
	// -E, not -e: with -e a session's process logs on its stderr, which is
	// by then the client's, and at DEBUG1 every ssh command would print
	// sshd's debug lines.
	cmd := h.inNS(sshd, "-D", "-E", logPath, "-f", "/dev/null",
		"-o", "ListenAddress="+net.JoinHostPort(h.Addr, strconv.Itoa(h.SSHPort)),
		"-o", "HostKey="+hostKey, "-o", "PidFile="+filepath.Join(h.Root, "sshd.pid"),
		"-o", "AuthorizedKeysFile="+auth, "-o", "PermitRootLogin=prohibit-password",
		"-o", "PasswordAuthentication=no", "-o", "KbdInteractiveAuthentication=no",
		"-o", "UsePAM=no", "-o", "StrictModes=no",
		// DEBUG1 logs every channel a client opens (SSHChannels counts them).
		"-o", "LogLevel=DEBUG1",
		"-o", "SetEnv=DOCKER_HOST="+h.Socket)
	for _, o := range h.opts.SSHD {
		cmd.Args = append(cmd.Args, "-o", o)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	// Pdeathsig: a test binary killed by its timeout takes the host with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start sshd: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	h.Host = fmt.Sprintf("ssh://root@%s:%d", h.Addr, h.SSHPort)
	addr := net.JoinHostPort(h.Addr, strconv.Itoa(h.SSHPort))
	for {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			if _, err := os.Stat(filepath.Join(h.Root, "sshd.pid")); err == nil {
				return nil
			}
		}
		select {
		case err := <-exited:
			return fmt.Errorf("sshd exited: %v: %s", err, tail(filepath.Join(h.Root, "sshd.log")))
		case <-ctx.Done():
			return fmt.Errorf("sshd did not listen on %s: %s", addr, tail(filepath.Join(h.Root, "sshd.log")))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// RestartEngine stops the host's dockerd as an operator would (SIGTERM by
// pid file: its containers stop) and starts it again on the same data, as
// after a reboot of the engine. It returns once the engine answers; what
// comes back by itself (restart policies) is the test's to see.
func (r *Remote) RestartEngine(t testing.TB) {
	t.Helper()
	if err := r.h.stopEngine(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := r.h.dockerd(ctx); err != nil {
		t.Fatalf("restart the engine of %s: %v", r.Host, err)
	}
}

// stopEngine stops the host's dockerd by its pid file and returns once it
// no longer answers. Its sshd and namespace stay: the machine is up, its
// engine is not.
func (h *remoteHost) stopEngine() error {
	stopPidFile(filepath.Join(h.Root, "dockerd.pid"), 30*time.Second)
	unmountUnder(filepath.Join(h.Root, "exec"))
	unmountUnder(filepath.Join(h.Root, "data"))
	if err := exec.Command("docker", "-H", h.Socket, "version").Run(); err == nil {
		return fmt.Errorf("the engine of %s still answers after it was stopped", h.Host)
	}
	return nil
}

func (h *remoteHost) stop() {
	stopPidFile(filepath.Join(h.Root, "sshd.pid"), 5*time.Second)
	stopPidFile(filepath.Join(h.Root, "dockerd.pid"), 30*time.Second)
	unmountUnder(h.Root)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if h.hostVeth != "" {
		_ = run(ctx, "ip", "link", "del", h.hostVeth)
	}
	if h.Namespace != "" {
		if err := run(ctx, "ip", "netns", "del", h.Namespace); err != nil {
			h.t.Logf("remote host cleanup: %v", err)
		}
	}
	if err := os.RemoveAll(h.Root); err != nil {
		h.t.Logf("remote host cleanup: %v", err)
	}
}

// stopPidFile ends the process named by a pid file with SIGTERM, then
// SIGKILL after the grace period: never by name, as other engineers' sshd
// and dockerd run on the same machine.
func stopPidFile(path string, grace time.Duration) {
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return
	}
	if syscall.Kill(pid, syscall.SIGTERM) != nil {
		return
	}
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	time.Sleep(200 * time.Millisecond)
}

// unmountUnder detaches mounts a stopped dockerd may leave in its data and
// exec roots, deepest first, so that the folder can be removed.
func unmountUnder(root string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var mounts []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && strings.HasPrefix(f[4], root+"/") {
			mounts = append(mounts, f[4])
		}
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		_ = syscall.Unmount(mounts[i], syscall.MNT_DETACH)
	}
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(bytes.TrimSpace(b))
}
