package engine

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/maestro-platform/deploy/internal/testenv"
)

func TestConnectDeadDaemon(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "nonexistent.sock")
	t0 := time.Now()
	_, err := Connect(context.Background(), "unix://"+sock)
	if err == nil {
		t.Fatal("connected to a socket that does not exist")
	}
	if d := time.Since(t0); d > PingTimeout+time.Second {
		t.Errorf("took %v", d)
	}
	for _, want := range []string{"unix://" + sock, "is the Docker daemon running", "systemctl start docker"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}

// A socket that accepts but never answers: the ping timeout must end it.
func TestConnectHungDaemon(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "hung.sock")
	l, err := listenUnix(sock)
	if err != nil {
		t.Skip(err)
	}
	defer l.Close()
	t0 := time.Now()
	_, err = Connect(context.Background(), "unix://"+sock, WithPingTimeout(time.Second))
	if err == nil || !strings.Contains(err.Error(), sock) {
		t.Fatalf("err = %v", err)
	}
	// A fails-fast promise: five times the timeout, and more.
	if d := time.Since(t0); d > 6*time.Second {
		t.Errorf("took %v with a 1s ping timeout", d)
	}
}

func TestConnectFromDockerHost(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "env.sock")
	t.Setenv("DOCKER_HOST", "unix://"+sock)
	_, err := Connect(context.Background(), "")
	if err == nil || !strings.Contains(err.Error(), "DOCKER_HOST=unix://"+sock+" is set") {
		t.Fatalf("err = %v, want it to point at DOCKER_HOST", err)
	}
}

func TestConnectSSHUnreachable(t *testing.T) {
	testenv.RequireCommand(t, "ssh")
	port := testenv.FreePorts(t, 1)[0] // nothing listens there
	host := fmt.Sprintf("ssh://nobody@127.0.0.1:%d", port)
	t0 := time.Now()
	_, err := Connect(context.Background(), host,
		WithSSHFlags([]string{"-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=" + filepath.Join(t.TempDir(), "kh")}))
	if err == nil {
		t.Fatal("connected to a closed port")
	}
	if d := time.Since(t0); d > PingTimeout+2*time.Second {
		t.Errorf("took %v", d)
	}
	for _, want := range []string{host, "ssh nobody@127.0.0.1:" + strconv.Itoa(port) + " docker version"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}

func TestConnectLocal(t *testing.T) {
	e := connect(t)
	v, api, err := e.Version(context.Background())
	if err != nil || v == "" || api == "" {
		t.Fatalf("Version = %q, %q, %v", v, api, err)
	}
	if e.Host == "" {
		t.Error("no Host")
	}
	if _, err := e.ImageID(context.Background(), "enginetest/none:"+strconv.Itoa(os.Getpid())); !IsNotFound(err) {
		t.Errorf("ImageID of a missing image: %v, want not found", err)
	}
}

func listenUnix(path string) (net.Listener, error) { return net.Listen("unix", path) }
