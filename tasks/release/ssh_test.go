package release

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/maestro-platform/deploy/internal/testenv"
	"github.com/maestro-platform/deploy/tasks/catalog"
)

// The engine of an ssh host is reached through its socket forwarded over
// the one ssh connection: one remote command in all (asking where the
// engine listens), and each API connection a forwarded channel. A host
// that cannot forward the socket (here: a path that is not there, which
// the host refuses as it would a forwarding its sshd forbids) is reached
// with dial-stdio instead, and says so.
func TestConnectEngine(t *testing.T) {
	r := testenv.StartRemote(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cat := &catalog.Catalog{}
	env := &catalog.Environment{Name: "demo", Host: r.Host, KnownHosts: r.KnownHosts, Identity: r.Identity}
	session := func() *sshSession {
		s, err := newSSHSession(cat, env)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}

	before := r.SSHChannels(t)
	s := session()
	remote, err := checkHostKey(ctx, cat, env, s.flags)
	if want := strings.TrimPrefix(r.Socket, "unix://"); err != nil || remote != want {
		t.Fatalf("the host's engine socket: %q, %v; want %q", remote, err, want)
	}
	eng, how, err := s.connectEngine(ctx, remote)
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	if how != "engine socket forwarded over one ssh connection" || s.socket == "" || eng.Host != r.Host {
		t.Errorf("connected %q as %s (socket %q)", eng.Host, how, s.socket)
	}
	for range 5 {
		if _, err := eng.API.Ping(ctx, client.PingOptions{}); err != nil {
			t.Fatal(err)
		}
		eng.API.Close() // a new connection each time
	}
	after := r.SSHChannels(t)
	if n := after["session"] - before["session"]; n != 1 {
		t.Errorf("%d ssh sessions, want 1 (the question where the engine listens)", n)
	}
	if n := after["direct-streamlocal@openssh.com"] - before["direct-streamlocal@openssh.com"]; n < 5 {
		t.Errorf("%d forwarded connections, want one per API connection (at least 5)", n)
	}

	s2 := session()
	if _, err := checkHostKey(ctx, cat, env, s2.flags); err != nil {
		t.Fatal(err)
	}
	eng2, how, err := s2.connectEngine(ctx, "/nonexistent/docker.sock")
	if err != nil {
		t.Fatal(err)
	}
	defer eng2.Close()
	if !strings.HasPrefix(how, "dial-stdio per API connection: forwarding /nonexistent/docker.sock failed") || s2.socket != "" {
		t.Errorf("fallback: %s (socket %q)", how, s2.socket)
	}
	if _, err := eng2.API.Ping(ctx, client.PingOptions{}); err != nil {
		t.Errorf("through dial-stdio: %v", err)
	}
}
