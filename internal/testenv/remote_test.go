package testenv_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/cli/cli/connhelper"
	"github.com/moby/moby/client"

	"github.com/maestro-platform/deploy/internal/testenv"
)

// TestStartRemote proves the second host is separate from the main engine,
// reachable over ssh only with its known host key, and fully removed
// afterwards.
func TestStartRemote(t *testing.T) {
	testenv.RequireDocker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var r *testenv.Remote
	t.Run("up", func(t *testing.T) {
		r = testenv.StartRemote(t)
		// The engine's own socket answers, and it is not the main engine.
		out, err := exec.CommandContext(ctx, "docker", "-H", r.Socket, "info", "--format", "{{.DockerRootDir}}").CombinedOutput()
		if err != nil {
			t.Fatalf("docker -H %s info: %v: %s", r.Socket, err, out)
		}
		if got, want := strings.TrimSpace(string(out)), filepath.Join(r.Root, "data"); got != want {
			t.Fatalf("remote engine root = %q, want %q", got, want)
		}
		if out, err := exec.CommandContext(ctx, "docker", "-H", r.Socket, "ps").CombinedOutput(); err != nil {
			t.Fatalf("docker ps: %v: %s", err, out)
		}

		// Over ssh, with the host key checked, through the same connection
		// helper the engine package uses.
		h, err := connhelper.GetConnectionHelperWithSSHOpts(r.Host, r.SSHFlags())
		if err != nil {
			t.Fatal(err)
		}
		c, err := client.New(client.WithHost(h.Host), client.WithDialContext(h.Dialer))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		info, err := c.Info(ctx, client.InfoOptions{})
		if err != nil {
			t.Fatalf("info over %s: %v", r.Host, err)
		}
		if got, want := info.Info.DockerRootDir, filepath.Join(r.Root, "data"); got != want {
			t.Fatalf("engine over ssh has root %q, want the remote's %q", got, want)
		}

		// A known_hosts file holding another key is refused.
		other := filepath.Join(t.TempDir(), "k")
		if out, err := exec.CommandContext(ctx, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", other).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v: %s", err, out)
		}
		pub, _ := os.ReadFile(other + ".pub")
		wrong := filepath.Join(t.TempDir(), "known_hosts")
		f := strings.Fields(string(pub))
		line := "[" + r.Addr + "]:2222 " + f[0] + " " + f[1] + "\n"
		if err := os.WriteFile(wrong, []byte(line), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err = exec.CommandContext(ctx, "ssh", "-p", "2222", "-o", "StrictHostKeyChecking=yes",
			"-o", "UserKnownHostsFile="+wrong, "-o", "BatchMode=yes", "-i", r.Identity,
			"root@"+r.Addr, "true").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "Host key verification failed") {
			t.Fatalf("ssh with a wrong host key: err=%v out=%s, want a refusal", err, out)
		}
	})
	if r == nil {
		return
	}
	// Cleanup of the subtest ran: nothing of the host is left.
	if _, err := os.Stat(r.Root); !os.IsNotExist(err) {
		t.Errorf("%s still exists after cleanup (err=%v)", r.Root, err)
	}
	if out, err := exec.Command("ip", "netns", "list").CombinedOutput(); err != nil || strings.Contains(string(out), r.Namespace) {
		t.Errorf("namespace %s still listed: %s %v", r.Namespace, out, err)
	}
	if out, err := exec.Command("docker", "-H", r.Socket, "version").CombinedOutput(); err == nil {
		t.Errorf("remote engine still answers after cleanup: %s", out)
	}
}
