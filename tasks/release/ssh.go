package release

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/docker/cli/cli/connhelper"

	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/maestro-platform/deploy/tasks/ui"
)

// sshTimeout bounds the host key preflight.
const sshTimeout = 30 * time.Second

// knownHostsFile is the environment's known_hosts, with ~ expanded and a
// relative path taken from the catalog's folder.
func knownHostsFile(cat *catalog.Catalog, env *catalog.Environment) string {
	return localPath(cat, env.KnownHosts, "~/.ssh/known_hosts")
}

func localPath(cat *catalog.Catalog, p, def string) string {
	if p == "" {
		p = def
	}
	if p == "" {
		return ""
	}
	if p == "~" || strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			p = filepath.Join(home, strings.TrimPrefix(p, "~"))
		}
	}
	if !filepath.IsAbs(p) && cat.File != "" {
		p = filepath.Join(filepath.Dir(cat.File), p)
	}
	return p
}

// SSHFlags are the ssh options every connection to env's host uses: the
// host key must be in the environment's known_hosts file (and only there:
// the system-wide file is not consulted), unknown or changed keys are
// refused, and ssh never prompts. Nothing is forwarded to the host (not the
// agent, not a port) and no local command runs: the link carries the
// Docker API and nothing else (the engine's socket, which sshSession's
// forward alone asks the connection to forward here). A link that goes silent for 15 s (three
// unanswered keepalives, 5 s apart) ends the connection, so a dropped
// network fails a promote instead of hanging it.
func SSHFlags(cat *catalog.Catalog, env *catalog.Environment) []string {
	flags := []string{
		"-o", "StrictHostKeyChecking=yes",
		"-o", sshPathOption("UserKnownHostsFile", knownHostsFile(cat, env)),
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "BatchMode=yes",
		"-o", "ConnectTimeout=15",
		"-o", "ForwardAgent=no",
		"-o", "ClearAllForwardings=yes",
		"-o", "PermitLocalCommand=no",
		"-o", "ServerAliveInterval=5",
		"-o", "ServerAliveCountMax=3",
	}
	if env.Identity != "" {
		// -o IdentityFile, not -i: ssh stat()s an -i path as written but
		// %-expands it when loading the key, so no -i path can hold a %.
		flags = append(flags, "-o", "IdentitiesOnly=yes", "-o", sshPathOption("IdentityFile", localPath(cat, env.Identity, "")))
	}
	return flags
}

// sshPathOption is an ssh -o option whose value is a path, written so
// that the path comes out whole: ssh splits an option's value at spaces
// (UserKnownHostsFile takes several files) unless it is in double quotes,
// reads a backslash in it as an escape, and expands %-tokens in
// UserKnownHostsFile, IdentityFile and ControlPath (%h, %d...), so a %
// is written %%. A line break cannot be written at all; the catalog
// refuses one in a path.
func sshPathOption(name, path string) string {
	v := strings.NewReplacer(`%`, `%%`, `\`, `\\`, `"`, `\"`).Replace(path)
	return name + `="` + v + `"`
}

// HostKeyError is an ssh host whose key is not the one on record, or not
// on record at all: the connection was refused.
type HostKeyError struct {
	Host       string // host[:port]
	KnownHosts string
	Changed    bool // a different key is on record (else none is)
	Detail     string
}

func (e *HostKeyError) Error() string {
	if e.Changed {
		return fmt.Sprintf("host key for %s does not match %s: %s; refusing to connect. "+
			"If the host was really reinstalled, check its new key's fingerprint out of band, then replace the entry "+
			"(ssh-keygen -R '%s' -f %s, and add the checked key)", e.Host, e.KnownHosts, e.Detail, knownHostsName(e.Host), e.KnownHosts)
	}
	return fmt.Sprintf("host key for %s is not in %s: %s; refusing to trust an unknown host. "+
		"Check the host's key fingerprint out of band, then add it to %s (ssh-keyscan gives the line to add)",
		e.Host, e.KnownHosts, e.Detail, e.KnownHosts)
}

// knownHostsName is how known_hosts names host[:port].
func knownHostsName(hostport string) string {
	h, p, err := net.SplitHostPort(hostport)
	if err != nil || p == "22" {
		return strings.Trim(hostport, "[]")
	}
	return "[" + h + "]:" + p
}

// sshTarget splits ssh://user@host:port into ssh's arguments.
func sshTarget(host string) (args []string, display string, err error) {
	u, err := url.Parse(host)
	if err != nil || u.Scheme != "ssh" || u.Hostname() == "" {
		return nil, "", fmt.Errorf("not an ssh host: %q", host)
	}
	if u.Port() != "" {
		args = append(args, "-p", u.Port())
		display = net.JoinHostPort(u.Hostname(), u.Port())
	} else {
		display = u.Hostname()
	}
	if u.User != nil && u.User.Username() != "" {
		args = append(args, "-l", u.User.Username())
	}
	// "--" ends ssh's options: a host name can never be read as one.
	return append(args, "--", u.Hostname()), display, nil
}

// endpointCmd asks the host's docker CLI where its engine listens: the
// endpoint of its current context, DOCKER_HOST included, as `docker system
// dial-stdio` would reach it. A fixed command: nothing from the catalog
// reaches the remote shell.
var endpointCmd = []string{"docker", "context", "inspect", "--format", "'{{.Endpoints.docker.Host}}'"}

// unixEndpoint is an engine socket path as endpointCmd prints it; anything
// else (a tcp:// engine, a context of another kind, stray output) is not
// forwarded.
var unixEndpoint = regexp.MustCompile(`^unix://(/[A-Za-z0-9._/+@-]+)$`)

// checkHostKey connects once with the environment's ssh options and asks
// the docker CLI there for its engine's socket, so that a wrong or unknown
// host key, a refused login or a missing docker is reported plainly before
// anything is sent. That ssh stays as the connection master (flags hold
// ControlMaster=auto) which the engine's socket is then forwarded over. It
// returns the socket's path, or "" when the engine is not on a unix socket
// there.
func checkHostKey(ctx context.Context, cat *catalog.Catalog, env *catalog.Environment, flags []string) (string, error) {
	target, display, err := sshTarget(env.Host)
	if err != nil {
		return "", err
	}
	kh := knownHostsFile(cat, env)
	if _, err := os.Stat(kh); err != nil {
		return "", fmt.Errorf("environment %s: known_hosts file %s: %w; host keys are always checked: add the host's key there "+
			"(after checking its fingerprint) or set known_hosts in [environments.%s]", env.Name, kh, err, env.Name)
	}
	ctx, cancel := context.WithTimeout(ctx, sshTimeout)
	defer cancel()
	args := append(append(append([]string(nil), flags...), target...), endpointCmd...)
	cmd := exec.CommandContext(ctx, "ssh", args...)
	// Files, not pipes: this ssh may leave a connection master behind
	// (ControlPersist), and a pipe it inherited would keep Wait waiting.
	outf, err := os.CreateTemp("", "maestro-ssh-")
	if err != nil {
		return "", err
	}
	defer os.Remove(outf.Name())
	defer outf.Close()
	errf, err := os.CreateTemp("", "maestro-ssh-")
	if err != nil {
		return "", err
	}
	defer os.Remove(errf.Name())
	defer errf.Close()
	cmd.Stdout, cmd.Stderr = outf, errf
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		b, _ := os.ReadFile(errf.Name())
		msg := string(b)
		if hk := classifyHostKey(msg, display, kh); hk != nil {
			return "", hk
		}
		if ctx.Err() != nil {
			return "", fmt.Errorf("ssh %s: no answer within %s", display, sshTimeout)
		}
		return "", fmt.Errorf("ssh %s: `docker context inspect` there failed (is docker installed for that user?): %v: %s",
			display, err, ui.Clean(lastLine(msg)))
	}
	out, _ := os.ReadFile(outf.Name())
	if m := unixEndpoint.FindStringSubmatch(strings.TrimSpace(string(out))); m != nil {
		return m[1], nil
	}
	return "", nil
}

// classifyHostKey recognises ssh's host key refusals in its stderr.
func classifyHostKey(stderr, host, kh string) *HostKeyError {
	switch {
	case strings.Contains(stderr, "REMOTE HOST IDENTIFICATION HAS CHANGED"),
		strings.Contains(stderr, "Host key for") && strings.Contains(stderr, "has changed"):
		return &HostKeyError{Host: host, KnownHosts: kh, Changed: true, Detail: "ssh says the remote host identification has changed"}
	case strings.Contains(stderr, "host key is known for"), strings.Contains(stderr, "No matching host key"),
		strings.Contains(stderr, "Host key verification failed"):
		detail := "ssh found no key on record for it"
		for _, l := range strings.Split(stderr, "\n") {
			if strings.Contains(l, "host key is known for") {
				detail = "ssh: " + strings.TrimSpace(l)
			}
		}
		return &HostKeyError{Host: host, KnownHosts: kh, Detail: detail}
	}
	return nil
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// sshSession is the private folder (0700) of one run's ssh traffic to a
// host: the connection master's control socket and the tunnel socket.
// Sharing one ssh connection matters: compose opens many API
// connections, and a fresh ssh handshake costs about half a second each.
type sshSession struct {
	dir   string
	flags []string
	host  string
	// socket is the host's engine socket forwarded here, once
	// connectEngine has done so ("" before, or when it could not).
	socket string
}

func newSSHSession(cat *catalog.Catalog, env *catalog.Environment) (*sshSession, error) {
	dir, err := os.MkdirTemp("", "maestro-ssh-")
	if err != nil {
		return nil, err
	}
	flags := append(SSHFlags(cat, env),
		"-o", "ControlMaster=auto", "-o", sshPathOption("ControlPath", filepath.Join(dir, "cm")), "-o", "ControlPersist=60")
	return &sshSession{dir: dir, flags: flags, host: env.Host}, nil
}

// forward makes the engine socket remote, on the host, reachable at a
// local socket in the session's private folder, over the connection master
// (ssh -O forward -L): every API connection is then a channel of the one
// ssh connection, with no process started on the host for it. It returns
// the local socket's path.
func (s *sshSession) forward(ctx context.Context, remote string) (string, error) {
	target, _, err := sshTarget(s.host)
	if err != nil {
		return "", err
	}
	local := filepath.Join(s.dir, "engine.sock")
	// Without ClearAllForwardings (ssh keeps the first value it reads of an
	// option): that one forwarding is the point of this command.
	var flags []string
	for i := 0; i < len(s.flags); i++ {
		if s.flags[i] == "-o" && i+1 < len(s.flags) && strings.HasPrefix(s.flags[i+1], "ClearAllForwardings=") {
			i++
			continue
		}
		flags = append(flags, s.flags[i])
	}
	ctx, cancel := context.WithTimeout(ctx, sshTimeout)
	defer cancel()
	args := append(append(flags, "-O", "forward", "-L", local+":"+remote), target...)
	cmd := exec.CommandContext(ctx, "ssh", args...)
	cmd.WaitDelay = 5 * time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("ssh -O forward: %v: %s", err, ui.Clean(lastLine(string(out))))
	}
	return local, nil
}

// connectEngine connects to the engine of the session's host: through its
// socket forwarded over the connection master when checkHostKey found one,
// else (an engine not on a unix socket, a host that refuses to forward
// one) with a `docker system dial-stdio` per API connection. It says which
// in how.
func (s *sshSession) connectEngine(ctx context.Context, remote string) (eng *engine.Engine, how string, err error) {
	opts := []engine.Option{engine.WithSSHFlags(s.flags), engine.WithPingTimeout(30 * time.Second)}
	how = "dial-stdio per API connection"
	if remote != "" {
		local, ferr := s.forward(ctx, remote)
		if ferr == nil {
			if eng, ferr = engine.Connect(ctx, s.host, append(opts, engine.WithForwardedSocket(local))...); ferr == nil {
				s.socket = local
				return eng, "engine socket forwarded over one ssh connection", nil
			}
		}
		how = fmt.Sprintf("dial-stdio per API connection: forwarding %s failed: %v", remote, firstLine(ferr))
	}
	eng, err = engine.Connect(ctx, s.host, opts...)
	return eng, how, err
}

// Close ends the connection master and removes the folder.
func (s *sshSession) Close() error {
	if target, _, err := sshTarget(s.host); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		args := append(append(append([]string(nil), s.flags...), "-O", "exit"), target...)
		cmd := exec.CommandContext(ctx, "ssh", args...)
		_ = cmd.Run()
	}
	return os.RemoveAll(s.dir)
}

// tunnel is a local unix socket that serves the Docker API of a remote
// engine, for the compose CLI and `docker stack deploy`, so that they never
// do ssh on their own: compose v1's paramiko accepts an unknown host key
// with a mere warning. Its connections to the host go through the engine
// socket forwarded over the session's one ssh connection, or, where that
// could not be done, through `ssh ... docker system dial-stdio`.
//
// It forwards HTTP requests, not bytes: compose v1 opens dozens of short
// connections, and each new dial-stdio channel starts a docker process on
// the host; requests ride a few kept-alive connections instead. Upgraded
// connections (attach, exec) are passed through as they are.
type tunnel struct {
	// Host is the DOCKER_HOST value to give the tools: unix:///...
	Host string
	srv  *http.Server
	tr   *http.Transport
	done chan struct{}
}

func startTunnel(s *sshSession) (*tunnel, error) {
	var dial func(ctx context.Context, network, addr string) (net.Conn, error)
	if s.socket != "" {
		dial = engine.DialUnix(s.socket)
	} else {
		h, err := connhelper.GetConnectionHelperWithSSHOpts(s.host, s.flags)
		if err != nil {
			return nil, fmt.Errorf("docker host %s: %w", s.host, err)
		}
		if h == nil {
			return nil, fmt.Errorf("docker host %s: not an ssh host", s.host)
		}
		dial = h.Dialer
	}
	sock := filepath.Join(s.dir, "docker.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return nil, fmt.Errorf("proxy socket: %w", err)
	}
	tr := &http.Transport{DialContext: dial, MaxIdleConnsPerHost: 16, IdleConnTimeout: time.Minute,
		DisableCompression: true}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.Out.URL.Scheme, r.Out.URL.Host = "http", "docker"
			r.Out.Host = r.In.Host
		},
		Transport:     tr,
		FlushInterval: -1, // stream build output, events and logs as they come
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			http.Error(w, fmt.Sprintf("ssh tunnel to %s: %v", s.host, err), http.StatusBadGateway)
		},
	}
	p := &tunnel{Host: "unix://" + sock, tr: tr, done: make(chan struct{}),
		srv: &http.Server{Handler: rp, ReadHeaderTimeout: 30 * time.Second}}
	go func() {
		defer close(p.done)
		_ = p.srv.Serve(ln)
	}()
	return p, nil
}

// Close stops the socket, ends open tunnels and their ssh channels.
func (p *tunnel) Close() error {
	err := p.srv.Close()
	<-p.done
	p.tr.CloseIdleConnections()
	return err
}
