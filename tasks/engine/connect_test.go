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
	_, err := Connect(context.Background(), "unix://"+sock)
	if err == nil {
		t.Fatal("connected to a socket that does not exist")
	}
	// Refused at once, not given up on by the ping timeout.
	if strings.Contains(err.Error(), "deadline exceeded") || !strings.Contains(err.Error(), "no such file or directory") {
		t.Errorf("want the missing socket as the cause, not a timeout: %v", err)
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
	// The test's own bound only ends a Connect that would hang for ever;
	// the ping timeout must be what ends it.
	ctx, cancel := testenv.Context(t)
	defer cancel()
	_, err = Connect(ctx, "unix://"+sock, WithPingTimeout(time.Second))
	if err == nil || !strings.Contains(err.Error(), sock) {
		t.Fatalf("err = %v", err)
	}
	if ctx.Err() != nil || !strings.Contains(err.Error(), "deadline exceeded") {
		t.Errorf("want the 1s ping timeout to end the hung connection, not the test's bound: %v", err)
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
	_, err := Connect(context.Background(), host,
		WithSSHFlags([]string{"-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=" + filepath.Join(t.TempDir(), "kh")}))
	if err == nil {
		t.Fatal("connected to a closed port")
	}
	if strings.Contains(err.Error(), "deadline exceeded") {
		t.Errorf("want ssh's refusal as the cause, not the ping timeout: %v", err)
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
