package release

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/check"
	"github.com/maestro-platform/deploy/tasks/compose"
	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/maestro-platform/deploy/tasks/hostfs"
	"github.com/maestro-platform/deploy/tasks/proxy"
	"github.com/maestro-platform/deploy/tasks/runtime"
	"github.com/maestro-platform/deploy/tasks/ui"
)

// target is a connected environment: its engine, the runtime that runs
// releases there, its release folder, and how the CLIs reach it.
type target struct {
	cat *catalog.Catalog
	env *catalog.Environment
	p   *ui.Printer
	eng *engine.Engine
	ssh *sshSession
	// how says how the engine of an ssh host is reached (sshSession's
	// connectEngine).
	how string
	// tunnel serves the remote engine's API on a local socket, for the
	// CLIs (ssh hosts).
	tunnel *tunnel
	fs     *hostfs.FS
	rt     runtime.Runtime
	// cliEnv is the whole environment the CLIs run with.
	cliEnv []string
	// private holds this run's private files (docker config).
	private string
}

func (t *target) Close() {
	if t.tunnel != nil {
		_ = t.tunnel.Close()
	}
	if t.eng != nil {
		_ = t.eng.Close()
	}
	if t.ssh != nil {
		_ = t.ssh.Close()
	}
	if t.private != "" {
		_ = os.RemoveAll(t.private)
	}
}

// hostAddr is where this machine reaches the ports the environment
// publishes: the host of its Docker URL, or loopback for a local engine.
func hostAddr(env *catalog.Environment) string {
	if env.Host != "" {
		if u, err := url.Parse(env.Host); err == nil && (u.Scheme == "ssh" || u.Scheme == "tcp") && u.Hostname() != "" {
			return u.Hostname()
		}
	}
	if b := env.Bind; b != "" && b != "0.0.0.0" && b != "::" {
		if ip := net.ParseIP(b); ip != nil {
			return b
		}
	}
	return "127.0.0.1"
}

func displayHost(env *catalog.Environment) string {
	if env.Host == "" {
		return "local engine"
	}
	return env.Host
}

// connect checks the host key (ssh), connects to the engine over one ssh
// connection, starts the local socket the CLIs use, and opens the release
// folder (its agent). Nothing of the stack on the host changes.
func connect(ctx context.Context, cat *catalog.Catalog, env *catalog.Environment, p *ui.Printer) (*target, error) {
	t := &target{cat: cat, env: env, p: p}
	t0 := time.Now()
	if env.Dir == "" {
		return nil, fmt.Errorf("environment %s has no dir: say where releases live on its host", env.Name)
	}
	var err error
	if t.private, err = os.MkdirTemp("", "maestro-cli-"); err != nil {
		return nil, err
	}
	dockerHost := env.Host
	var opts []engine.Option
	if strings.HasPrefix(env.Host, "ssh://") {
		s, err := newSSHSession(cat, env)
		if err != nil {
			t.Close()
			return nil, err
		}
		t.ssh = s
		remote, err := checkHostKey(ctx, cat, env, s.flags)
		if err != nil {
			t.Close()
			return nil, err
		}
		p.Line(ui.OK, "ssh", "host key of %s matches %s", env.Host, knownHostsFile(cat, env))
		if t.eng, t.how, err = s.connectEngine(ctx, remote); err != nil {
			t.Close()
			return nil, err
		}
	} else {
		if env.TLS() {
			opts = append(opts, engine.WithTLS(env.TLSCA, env.TLSCert, env.TLSKey))
		}
		if t.eng, err = engine.Connect(ctx, env.Host, opts...); err != nil {
			t.Close()
			return nil, err
		}
	}
	if t.ssh != nil {
		if t.tunnel, err = startTunnel(t.ssh); err != nil {
			t.Close()
			return nil, err
		}
		dockerHost = t.tunnel.Host
	}
	if dockerHost == "" {
		dockerHost = t.eng.API.DaemonHost()
	}
	// The CLIs run with nothing of the operator's environment: a release's
	// files may come from a host, and DOCKER_*, PATH, LD_* or a cloud
	// credential must be out of their reach.
	cfg := filepath.Join(t.private, "docker-config")
	if err := os.MkdirAll(cfg, 0o700); err != nil {
		t.Close()
		return nil, err
	}
	t.cliEnv = compose.MinimalEnv(cfg, "DOCKER_HOST="+dockerHost)
	if env.TLS() {
		certs, err := tlsFolder(t.private, env)
		if err != nil {
			t.Close()
			return nil, err
		}
		t.cliEnv = append(t.cliEnv, "DOCKER_TLS_VERIFY=1", "DOCKER_CERT_PATH="+certs)
	}
	if t.fs, err = hostfs.Open(ctx, t.eng, env.Dir, cat.Project.Name, env.Name); err != nil {
		t.Close()
		return nil, err
	}
	if t.rt, err = runtime.ForHost(ctx, env, t.eng, t.cliEnv, proxy.For(t.eng, cat, env)); err != nil {
		t.Close()
		return nil, err
	}
	if t.how != "" {
		p.Line(ui.OK, "connect", "%s answers (%s; %s)", t.eng.Host, ui.Seconds(time.Since(t0)), t.how)
	} else {
		p.Line(ui.OK, "connect", "%s answers (%s)", t.eng.Host, ui.Seconds(time.Since(t0)))
	}
	return t, nil
}

// tlsFolder lays the environment's TLS files out as the docker and compose
// CLIs look for them (DOCKER_CERT_PATH): ca.pem, cert.pem, key.pem, in a
// private folder of this run.
func tlsFolder(private string, env *catalog.Environment) (string, error) {
	dir := filepath.Join(private, "tls")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	for name, src := range map[string]string{"ca.pem": env.TLSCA, "cert.pem": env.TLSCert, "key.pem": env.TLSKey} {
		b, err := os.ReadFile(src)
		if err != nil {
			return "", fmt.Errorf("environment %s: %w", env.Name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// checks runs testAll's checks against the environment's host.
func (t *target) checks(ctx context.Context) (*check.Report, error) {
	return check.Run(ctx, t.cat, check.Target{Env: t.env, Project: t.cat.Project.Name, HostAddr: hostAddr(t.env), API: t.eng.API,
		Health:     t.rt.Health(t.cat.Project.Name),
		ReuseProbe: true}, check.Options{Printer: t.p})
}
